"""Find and mask secrets in text: the tenant's exact secret values (and their encoded forms) plus a few
high-confidence patterns (private keys, cloud and SaaS keys, JWTs, passwords in connection strings).

Exact values are found with one Aho-Corasick automaton over the prefixes of every form of every secret (a single
C pass over the text, whatever the number of secrets: ``matcher.FormMatcher``); the patterns are a handful of
regexes, each anchored on a literal so the regex engine skips ahead instead of trying every position.

A registered secret is masked as ``SECRET_REF(name)`` — the same placeholder the Safety Wrapper substitutes at
tool execution, so the model can still *use* a secret it can no longer *see*. A pattern hit is masked as
``[REDACTED:<class>:<8 hex>]``, stable for the same value (an HMAC under a per-process key), so the model can tell
two different keys apart without learning either.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets as _random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, quote_plus

import ahocorasick_rs as ac

from letsbe_secrets_proxy.proxy.matcher import FormMatcher

Action = Literal["mask", "block"]

REGISTRY_CLASS = "secret"  # the class of exact registry values
MIN_SECRET_LENGTH = 6  # shorter values cannot be masked without masking ordinary words
MIN_FORM_LENGTH = 8  # encoded fragments shorter than this would match by chance


@dataclass(frozen=True)
class Pattern:
    kind: str
    anchors: tuple[str, ...]  # literals every match starts with: found in one automaton pass, then matched there
    regex: re.Pattern[str]
    group: int = 0  # which group is the secret (the password in a URL, not the URL)


PATTERNS: tuple[Pattern, ...] = (
    # A BEGIN without its END is masked to the end of the text: a truncated key is still a key.
    Pattern("private_key", ("-----BEGIN ",), re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?:[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|[\s\S]*\Z)")),
    Pattern("aws_access_key", ("AKIA", "ASIA", "ABIA", "ACCA"),
            re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b")),
    Pattern("aws_secret_key", ("aws", "AWS", "Aws"), re.compile(
        r"(?i:aws_?secret_?(?:access_?)?key)[\"'\s:=]{1,5}([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"), 1),
    Pattern("gcp_api_key", ("AIza",), re.compile(r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])")),
    Pattern("stripe_key", ("sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_"), re.compile(
        r"\b(?:(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,247}|whsec_[0-9A-Za-z]{24,})\b")),
    Pattern("github_token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"), re.compile(
        r"\b(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,255})\b")),
    Pattern("llm_api_key", ("sk-",), re.compile(
        r"\bsk-(?:proj-|ant-|svcacct-|admin-)?[A-Za-z0-9_-]{32,}(?![A-Za-z0-9_-])")),
    Pattern("slack_token", ("xoxa-", "xoxb-", "xoxp-", "xoxo-", "xoxs-", "xoxr-"), re.compile(
        r"\bxox[abposr]-[A-Za-z0-9-]{10,250}\b")),
    Pattern("jwt", ("eyJ",), re.compile(
        r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}(?![A-Za-z0-9_-])")),
    Pattern("connection_password", ("://",), re.compile(r"://[^\s:/@'\"<>]{0,256}:([^\s/@'\"<>]{1,256})@"), 1),
)

# For streams: a possibly unfinished instance of a pattern at the very end of the buffer. Text from its start is
# held back until the next chunk shows whether it completes (then it is masked) or not (then it is released).
OPEN_TAIL = re.compile(
    r"(?:-----BEGIN(?:(?!-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----)[\s\S])*"
    r"|(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]*"
    r"|(?i:aws_?secret_?(?:access_?)?key)[\"'\s:=]{0,5}[A-Za-z0-9/+=]*"
    r"|AIza[0-9A-Za-z_-]*"
    r"|(?:sk|rk)_(?:live|test)_[0-9A-Za-z]*|whsec_[0-9A-Za-z]*"
    r"|gh[pousr]_[A-Za-z0-9]*|github_pat_[A-Za-z0-9_]*"
    r"|sk-[A-Za-z0-9_-]*"
    r"|xox[abposr]-[A-Za-z0-9-]*"
    r"|eyJ[A-Za-z0-9_.-]*"
    r"|://[^\s/@'\"<>]*)\Z"
)
# At least the longest literal start of a pattern is always held back in a stream.
PATTERN_HOLD = 32
PATTERN_MIN = 7  # the shortest text a pattern can match ("://a:b@")

# One automaton over every anchor of every pattern (anchor index → pattern).
_ANCHORS = [(a, p) for p in PATTERNS for a in p.anchors]
_ANCHOR_AC = ac.BytesAhoCorasick([a.encode() for a, _ in _ANCHORS])

DEFAULT_POLICY: dict[str, Action] = {
    **{p.kind: "mask" for p in PATTERNS}, REGISTRY_CLASS: "mask", "private_key": "block"}


@dataclass(frozen=True)
class Finding:
    kind: str
    name: str | None  # the registry name for exact secrets
    action: Action


@dataclass(frozen=True)
class _Hit:
    start: int
    end: int
    kind: str
    name: str | None
    value: str
    context: int  # where the whole match starts (before the secret, e.g. "://user:" before a password)


def encoded_forms(value: str) -> set[str]:
    """How a secret can travel: as is, JSON-escaped (once and twice, for JSON inside JSON strings), URL-encoded,
    hex, and base64 (standard and URL-safe, at each of the three alignments it can have inside a longer
    base64 text — so ``base64("password=" + secret)`` is caught too)."""
    forms = {value}
    escaped = json.dumps(value)[1:-1]
    forms.add(escaped)
    forms.add(json.dumps(escaped)[1:-1])
    forms.add(json.dumps(value, ensure_ascii=False)[1:-1])
    forms.add(escaped.replace("/", "\\/"))
    for q in (quote(value, safe=""), quote_plus(value, safe="")):
        forms.add(q)
        forms.add(re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), q))
    raw = value.encode()
    forms.add(raw.hex())
    forms.add(raw.hex().upper())
    for offset in range(3):
        padded = b"\0" * offset + raw
        for enc in (base64.b64encode, base64.urlsafe_b64encode):
            text = enc(padded).decode().rstrip("=")
            # Drop the characters that depend on the bytes around the secret: the prefix ones and a partial tail.
            lead = (offset * 4 + 2) // 3 if offset else 0
            tail_bits = (len(padded) * 8) % 6
            forms.add(text[lead: len(text) - (1 if tail_bits else 0)] if tail_bits else text[lead:])
    return {f for f in forms if len(f) >= MIN_FORM_LENGTH or f == value}


class Redactor:
    """Immutable once built; rebuild when the registry changes (building 1,000 secrets takes milliseconds)."""

    def __init__(self, secrets: Mapping[str, str], policy: Mapping[str, Action] | None = None,
                 key: bytes | None = None):
        self.policy: dict[str, Action] = {**DEFAULT_POLICY, **(policy or {})}
        self._key = key or _random.token_bytes(32)
        self.skipped = sorted(n for n, v in secrets.items() if len(v) < MIN_SECRET_LENGTH)
        self._automaton: FormMatcher | None = None
        self._names: list[str] = []
        self.max_form = 0
        self.min_form = PATTERN_MIN
        forms: dict[str, str] = {}
        # Longer secrets first, so a form shared by two secrets is attributed to the longer one.
        for name, value in sorted(secrets.items(), key=lambda kv: -len(kv[1])):
            if len(value) < MIN_SECRET_LENGTH:
                continue
            for form in encoded_forms(value):
                forms.setdefault(form, name)
        if forms:
            self._automaton = FormMatcher([f.encode("utf-8", "surrogatepass") for f in forms])
            self._names = list(forms.values())
            self.max_form = max(len(f) for f in forms)
            self.min_form = min(self.min_form, min(len(f) for f in forms))

    @property
    def hold(self) -> int:
        """How many trailing characters a stream holds back between chunks."""
        return max(self.max_form, PATTERN_HOLD)

    # --- finding -------------------------------------------------------------------------------------------

    def _hits(self, text: str) -> list[_Hit]:
        # Both automata run over UTF-8 bytes (fast, SIMD prefilter); offsets are mapped back to characters.
        data = text.encode("utf-8", "surrogatepass")
        found = self._automaton.find_matches_as_indexes(data) if self._automaton is not None else []
        anchors = _ANCHOR_AC.find_matches_as_indexes(data, overlapping=True)
        if not found and not anchors:
            return []
        to_char = _offsets(data, text, [o for _, s, e in found for o in (s, e)] + [s for _, s, _ in anchors])
        hits: list[_Hit] = []
        for idx, s, e in found:
            start, end = to_char[s], to_char[e]
            hits.append(_Hit(start, end, REGISTRY_CLASS, self._names[idx], text[start:end], start))
        tried: set[tuple[str, int]] = set()
        for idx, s, _ in anchors:
            p, pos = _ANCHORS[idx][1], to_char[s]
            if (p.kind, pos) in tried:
                continue
            tried.add((p.kind, pos))
            m = p.regex.match(text, pos)
            if m is not None:
                s0, e0 = m.span(p.group)
                hits.append(_Hit(s0, e0, p.kind, None, m.group(p.group), m.start()))
        if len(hits) > 1:
            # Leftmost first, longer first; drop anything overlapping a hit already taken.
            hits.sort(key=lambda h: (h.start, -(h.end - h.start)))
            kept, last_end = [], -1
            for h in hits:
                if h.start >= last_end:
                    kept.append(h)
                    last_end = h.end
            hits = kept
        return hits

    def has_hits(self, text: str) -> bool:
        return bool(self._hits(text))

    def placeholder(self, hit: _Hit) -> str:
        if hit.kind == REGISTRY_CLASS:
            return f"SECRET_REF({hit.name})"
        tag = hmac.new(self._key, hit.value.encode(), hashlib.sha256).hexdigest()[:8]
        return f"[REDACTED:{hit.kind}:{tag}]"

    def redact(self, text: str) -> tuple[str, list[Finding]]:
        """The text with every hit masked, and what was found (never the values)."""
        if len(text) < self.min_form:
            return text, []
        hits = self._hits(text)
        if not hits:
            return text, []
        return self._apply(text, hits, len(text))[0], [self._finding(h) for h in hits]

    def _finding(self, hit: _Hit) -> Finding:
        return Finding(hit.kind, hit.name, self.policy.get(hit.kind, "mask"))

    def _apply(self, text: str, hits: Iterable[_Hit], upto: int) -> tuple[str, int]:
        """Mask the hits that start before ``upto``; return the masked text up to the end of the last of them
        (or ``upto``) and that position."""
        out, pos = [], 0
        for h in hits:
            if h.start >= upto:
                break
            out.append(text[pos: h.start])
            out.append(self.placeholder(h))
            pos = h.end
        cut = max(pos, upto)
        out.append(text[pos:cut])
        return "".join(out), cut


def _offsets(data: bytes, text: str, byte_offsets: list[int]) -> dict[int, int]:
    """Byte offset → character offset (the identity for ASCII text, the usual case)."""
    if len(data) == len(text):
        return {o: o for o in byte_offsets}
    out, chars, prev = {}, 0, 0
    for o in sorted(set(byte_offsets)):
        chars += len(data[prev:o].decode("utf-8", "surrogatepass"))
        out[o], prev = chars, o
    return out


class StreamRedactor:
    """Masks secrets in text that arrives in pieces (the deltas of one streamed field).

    It holds back the last ``hold - 1`` characters (a secret that starts before that point is complete in the
    buffer) and anything from the start of a pattern that may not be finished yet, releases the rest masked, and
    flushes what is left when the field ends. So a secret split across chunks is caught, while the stream is
    delayed by at most a few dozen characters instead of being buffered whole.
    """

    def __init__(self, redactor: Redactor):
        self.r = redactor
        self.pending = ""
        self.findings: list[Finding] = []

    def feed(self, text: str) -> str:
        buf = self.pending + text
        cut = max(0, len(buf) - (self.r.hold - 1))
        tail = OPEN_TAIL.search(buf)
        if tail is not None:
            cut = min(cut, tail.start())
        if cut == 0:
            self.pending = buf
            return ""
        hits = self.r._hits(buf)
        for h in hits:  # keep a match's leading context with it, or the next pass cannot recognise it
            if h.context < cut <= h.start:
                cut = h.context
        if cut == 0:
            self.pending = buf
            return ""
        out, cut = self.r._apply(buf, hits, cut)
        self.findings.extend(self.r._finding(h) for h in hits if h.start < cut)
        self.pending = buf[cut:]
        return out

    def flush(self) -> str:
        out, found = self.r.redact(self.pending)
        self.findings.extend(found)
        self.pending = ""
        return out
