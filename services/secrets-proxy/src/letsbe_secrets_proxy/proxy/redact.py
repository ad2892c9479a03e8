"""Find and mask secrets in text: the tenant's exact secret values (and their encoded forms) plus a few
high-confidence patterns (private keys, cloud and SaaS keys, JWTs, passwords in connection strings).

Exact values are found with one Aho-Corasick automaton over the prefixes of every form of every secret (a single
C pass over the text, whatever the number of secrets: ``matcher.FormMatcher``); the patterns are a handful of
regexes, each anchored on a literal so the regex engine skips ahead instead of trying every position.

Encodings that cannot be listed in advance (every byte %-encoded, mixed-case hex, HTML entities, JSON escaped at
any depth, look-alike and invisible characters, all of them layered) are undone instead: text that holds ``%``,
``&``, ``\\`` or non-ASCII characters is also scanned in its *decoded view* (what a browser, Python's
``unquote_plus``/``html.unescape`` or a JSON parser would make of it, NFKC-normalised, zero-width characters
dropped, repeated until nothing changes), and a hit there masks the exact span of the original text it came from.

A registered secret is masked as ``SECRET_REF(name)`` — the same placeholder the Safety Wrapper substitutes at
tool execution, so the model can still *use* a secret it can no longer *see*. A pattern hit is masked as
``[REDACTED:<class>:<8 hex>]``, stable for the same value (an HMAC under a per-process key), so the model can tell
two different keys apart without learning either.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import hmac
import json
import re
import secrets as _random
import unicodedata
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from html.entities import html5
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
class Hit:
    start: int
    end: int
    kind: str
    name: str | None
    value: str
    context: int  # where the whole match starts (before the secret, e.g. "://user:" before a password)


# --- the decoded view ----------------------------------------------------------------------------------------

_ENCODED = re.compile(
    r"(?:%[0-9A-Fa-f]{2})+"  # a run of %XX: UTF-8 bytes, any case
    r"|&(?:#[0-9]{1,10}|#[xX][0-9A-Fa-f]{1,8}|[A-Za-z][A-Za-z0-9]{1,31});?"  # HTML entity (';' optional)
    r"|\\+(?:u[0-9A-Fa-f]{4}|[\"'/bfnrt])?"  # a JSON escape at any depth: the run of backslashes is one escape
    r"|\+"  # the space of form encoding (quote_plus)
)
_MARKERS = ("%", "&", "\\", "+")
# Decoding starts only where one of these is: "+" alone needs none (the quote_plus form of every secret is in the
# automaton as it is), but once decoding runs, "+" is decoded with the rest.
_TRIGGERS = ("%", "&", "\\")
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
_INVISIBLE = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
                        "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0]")
_JSON_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
DECODE_ROUNDS = 8  # layers of encoding undone (each layer needs at least 2 characters per character)


def _percent_pieces(token: str) -> list[tuple[str, int, int]]:
    """``%C3%BC%41`` → [("ü", 0, 6), ("A", 6, 9)]: one piece per character, with its span in the token."""
    raw = bytes.fromhex(token.replace("%", ""))
    out, i = [], 0
    while i < len(raw):
        lead = raw[i]
        size = 1 if lead < 0xC0 else 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
        try:
            char = raw[i:i + size].decode("utf-8")
        except UnicodeDecodeError:
            char, size = raw[i:i + 1].decode("utf-8", "surrogateescape"), 1
        out.append((char, 3 * i, 3 * (i + size)))
        i += size
    return out


def _decode_token(token: str) -> str | None:
    """What one escape stands for, or None if it stands for itself."""
    head = token[0]
    if head == "+":
        return " "
    if head == "&":
        body = token[1:]
        if body.startswith("#"):
            try:
                code = int(body[2:].rstrip(";"), 16) if body[1] in "xX" else int(body[1:].rstrip(";"))
            except ValueError:
                return None
            return chr(code) if 0 < code < 0x110000 else None
        return html5.get(body) or html5.get(body.rstrip(";") + ";") or None
    # a run of backslashes with (or without) the character it escapes
    tail = token.lstrip("\\")
    if not tail:
        return "\\" if len(token) > 1 else None
    if tail[0] == "u":
        # At depth k a \\u escape has 2**(k-1) backslashes and a literal backslash 2**k: what the lowest set bit
        # of the run's length leaves are literal backslashes (one each once decoded), kept before the character.
        run = len(token) - len(tail)
        escape = run & -run
        return "\\" * ((run - escape) // (2 * escape)) + chr(int(tail[1:], 16))
    return _JSON_ESCAPES.get(tail, tail)


class _Layer:
    """One round of decoding: where each decoded character came from. ``spans`` are the decoded tokens
    (out_start, out_end, in_start, in_end); text between them maps one to one."""

    def __init__(self, spans: list[tuple[int, int, int, int]]):
        self.spans = spans
        self._outs = [sp[0] for sp in spans]
        self._ins = [sp[2] for sp in spans]

    def forward(self, i: int) -> int:
        """Where input position ``i`` is in the output."""
        k = bisect_right(self._ins, i) - 1
        if k < 0:
            return i
        o0, o1, _, i1 = self.spans[k]
        return o0 if i < i1 else o1 + (i - i1)

    def start(self, i: int) -> int:
        k = bisect_right(self._outs, i) - 1
        if k < 0:
            return i
        _, o1, i0, i1 = self.spans[k]
        return i0 if i < o1 else i1 + (i - o1)

    def end(self, j: int) -> int:
        if j <= 0:
            return 0
        k = bisect_right(self._outs, j - 1) - 1
        if k < 0:
            return j
        _, o1, _, i1 = self.spans[k]
        return i1 if j - 1 < o1 else i1 + (j - o1)


def _markers(text: str) -> list[int]:
    """Where an escape may start (str.find runs at memchr speed; a regex scan of the whole text would not)."""
    out = []
    for ch in _MARKERS:
        i = text.find(ch)
        while i >= 0:
            out.append(i)
            i = text.find(ch, i + 1)
    out.sort()
    return out


def _tokens(text: str) -> list[tuple[int, int, list[tuple[str, int, int]]]]:
    """Every escape in ``text``: (start, end, pieces), a piece being (decoded text, start, end) in ``text``."""
    found = []
    end = 0
    for at in _markers(text):
        if at < end:
            continue  # inside the token before (a run of %XX or of backslashes): matching again is quadratic
        m = _ENCODED.match(text, at)
        if m is None:
            continue
        s, e = m.span()
        token = m.group()
        if token[0] == "%":
            found.append((s, e, [(c, s + a, s + b) for c, a, b in _percent_pieces(token)]))
        else:
            rep = _decode_token(token)
            if rep is None:
                continue
            found.append((s, e, [(rep, s, e)]))
        end = e
    if not text.isascii():  # look-alikes (full-width letters, ligatures) and invisible characters
        for m in _NON_ASCII.finditer(text):
            run = m.group()
            if unicodedata.is_normalized("NFKC", run) and not _INVISIBLE.search(run):
                continue
            for i, ch in enumerate(run):
                rep = "" if _INVISIBLE.match(ch) else unicodedata.normalize("NFKC", ch)
                if rep != ch:
                    found.append((m.start() + i, m.start() + i + 1, [(rep, m.start() + i, m.start() + i + 1)]))
    found.sort(key=lambda t: t[0])
    return found


def _decode_once(text: str) -> tuple[str, _Layer] | None:
    out: list[str] = []
    spans: list[tuple[int, int, int, int]] = []
    pos = opos = 0
    for s, e, pieces in _tokens(text):
        if s < pos:
            continue  # inside a token already decoded
        out.append(text[pos:s])
        opos += s - pos
        for rep, a, b in pieces:
            out.append(rep)
            spans.append((opos, opos + len(rep), a, b))
            opos += len(rep)
        pos = e
    if not spans:
        return None
    out.append(text[pos:])
    return "".join(out), _Layer(spans)


@dataclass(frozen=True)
class View:
    """The fully decoded text and the layers that lead back to the original."""

    text: str
    layers: tuple[_Layer, ...]

    def start(self, i: int) -> int:
        for layer in reversed(self.layers):
            i = layer.start(i)
        return i

    def end(self, j: int) -> int:
        for layer in reversed(self.layers):
            j = layer.end(j)
        return j

    def windows(self, radius: int) -> list[tuple[int, int]]:
        """The stretches of the decoded text within ``radius`` of something decoding changed, merged. A hit
        anywhere else reads the same in the original text, where the plain scan has found it already."""
        changed = []
        for n, layer in enumerate(self.layers):
            for o0, o1, _, _ in layer.spans:
                for later in self.layers[n + 1:]:
                    o0, o1 = later.forward(o0), later.forward(o1)
                changed.append((max(0, o0 - radius), min(len(self.text), o1 + radius)))
        changed.sort()
        merged: list[tuple[int, int]] = []
        for a, b in changed:
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        return merged


# A JSON document's own escapes, read exactly as a parser reads them (a surrogate pair is one character).
_JSON_STRING_ESCAPE = re.compile(
    r"\\(?:u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|([\"\\/bfnrt]))")


def _decode_json_strings(text: str) -> tuple[str, _Layer] | None:
    """The text of a JSON document with its strings' escapes undone, as a parser reads them. The rule of
    ``_decode_once`` (a run of backslashes is one escape, at any depth) has to guess how deep a run goes (``\\\\\\"``
    is a quote two levels down, or a backslash and a quote one level down); the document's own level is known, so
    the rounds that follow see each string as ``redact`` sees it once ``json.loads`` has read it."""
    out: list[str] = []
    spans: list[tuple[int, int, int, int]] = []
    pos = opos = 0
    at = text.find("\\")  # str.find runs at memchr speed, a regex scan of the whole text would not
    while at >= 0:
        m = _JSON_STRING_ESCAPE.match(text, at)
        if m is None:  # not a JSON escape (the document is not valid JSON): left as it is
            at = text.find("\\", at + 1)
            continue
        at = text.find("\\", m.end())
        hi, lo, code, char = m.groups()
        if hi is not None:
            rep = chr(0x10000 + ((int(hi, 16) - 0xD800) << 10) + int(lo, 16) - 0xDC00)
        else:
            rep = chr(int(code, 16)) if code is not None else _JSON_ESCAPES.get(char, char)
        s, e = m.span()
        out.append(text[pos:s])
        opos += s - pos
        out.append(rep)
        spans.append((opos, opos + 1, s, e))
        opos += 1
        pos = e
    if not spans:
        return None
    out.append(text[pos:])
    return "".join(out), _Layer(spans)


def decoded_view(text: str, json_document: bool = False) -> View | None:
    """``text`` with every layer of %-, entity-, JSON- and form-encoding undone, or None if there is none.
    ``json_document``: ``text`` is a JSON document, whose own escapes are undone first, exactly."""
    layers: list[_Layer] = []
    if json_document and (once := _decode_json_strings(text)) is not None:
        text = once[0]
        layers.append(once[1])
    for _ in range(DECODE_ROUNDS):
        if not any(m in text for m in _TRIGGERS) and text.isascii():
            break
        once = _decode_once(text)
        if once is None:
            break
        text, layer = once
        layers.append(layer)
    return View(text, tuple(layers)) if layers else None


def normalized(text: str) -> str:
    view = decoded_view(text)
    return view.text if view is not None else text


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
    # The decoded view of any encoding of the value equals the decoded view of the value.
    forms |= {normalized(f) for f in forms}
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

    def _raw_hits(self, text: str, forms: bool = True) -> list[Hit]:
        # Both automata run over UTF-8 bytes (fast, SIMD prefilter); offsets are mapped back to characters.
        # ``forms=False``: the registered secrets' forms were looked for already (has_hits_in), only the patterns.
        data = text.encode("utf-8", "surrogatepass")
        found = self._automaton.find_matches_as_indexes(data) if forms and self._automaton is not None else []
        anchors = _ANCHOR_AC.find_matches_as_indexes(data, overlapping=True)
        if not found and not anchors:
            return []
        to_char = _offsets(data, text, [o for _, s, e in found for o in (s, e)] + [s for _, s, _ in anchors])
        hits: list[Hit] = []
        for idx, s, e in found:
            start, end = to_char[s], to_char[e]
            hits.append(Hit(start, end, REGISTRY_CLASS, self._names[idx], text[start:end], start))
        tried: set[tuple[str, int]] = set()
        for idx, s, _ in anchors:
            p, pos = _ANCHORS[idx][1], to_char[s]
            if (p.kind, pos) in tried:
                continue
            tried.add((p.kind, pos))
            m = p.regex.match(text, pos)
            if m is not None:
                s0, e0 = m.span(p.group)
                hits.append(Hit(s0, e0, p.kind, None, m.group(p.group), m.start()))
        return hits

    def _hits(self, text: str, view: View | bool | None = True, forms: bool = True) -> list[Hit]:
        """Hits in the text as it is and in its decoded view (mapped back to the original spans).
        ``view``: True to decode here, or a view already made (None: there is nothing to decode)."""
        hits = self._raw_hits(text, forms)
        if view is True:
            view = decoded_view(text)
        if view:
            windows = view.windows(self.hold)
            if sum(b - a for a, b in windows) * 2 > len(view.text):
                windows = [(0, len(view.text))]  # one scan beats many small ones
            for a, b in windows:
                for h in self._raw_hits(view.text[a:b]):
                    start, end = view.start(a + h.start), view.end(a + h.end)
                    hits.append(replace(h, start=start, end=end, context=view.start(a + h.context)))
        if len(hits) > 1:
            # Leftmost first, longer first; drop anything overlapping a hit already taken.
            hits.sort(key=lambda h: (h.start, -(h.end - h.start)))
            kept, last_end = [], -1
            for h in hits:
                if h.start >= last_end:
                    kept.append(h)
                    last_end = h.end
                elif h.end > last_end and kept:  # overlapping but longer: widen what is masked
                    kept[-1] = replace(kept[-1], end=h.end)
                    last_end = h.end
            hits = kept
        return hits

    def hits_in_json(self, text: str) -> list[Hit]:
        """The hits in the text of a JSON document (sorted, not overlapping), its strings read as a parser reads
        them, then decoded as ``redact`` decodes each of them."""
        return self._hits(text, decoded_view(text, json_document=True))

    def has_hits(self, text: str) -> bool:
        return bool(self._hits(text))

    def has_hits_in(self, data: bytes, chunk: int = 64 * 1024) -> bool:
        """Whether UTF-8 ``data`` holds anything to mask. A body above four pieces is scanned as a stream is
        (``StreamRedactor``: each piece with what the one before held back), so it is never held twice (decoded
        beside its bytes); that is slower (up to a few times, with many escapes), so smaller ones are scanned whole."""
        if len(data) <= 4 * chunk:
            # A registered secret as it was registered (what a masked body usually holds) ends the scan where it is
            # found; only a body without one pays for the patterns and the decoded view, once.
            if self._automaton is not None and self._automaton.found_in(data):
                return True
            return bool(self._hits(data.decode("utf-8"), forms=self._automaton is None))
        stream = StreamRedactor(self)
        decoder = codecs.getincrementaldecoder("utf-8")()
        for i in range(0, len(data), chunk):
            stream.feed(decoder.decode(data[i:i + chunk], final=i + chunk >= len(data)))
            if stream.findings:
                return True
        stream.flush()
        return bool(stream.findings)

    def placeholder(self, hit: Hit) -> str:
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
        return self._apply(text, hits, len(text))[0], [self.finding(h) for h in hits]

    def finding(self, hit: Hit) -> Finding:
        return Finding(hit.kind, hit.name, self.policy.get(hit.kind, "mask"))

    def _apply(self, text: str, hits: Iterable[Hit], upto: int) -> tuple[str, int]:
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
        view = decoded_view(buf)
        if view is None:
            cut = max(0, len(buf) - (self.r.hold - 1))
        else:  # hold back what *decodes* to the last hold - 1 characters, however long its encoded form
            cut = view.start(max(0, len(view.text) - (self.r.hold - 1)))
            tail = OPEN_TAIL.search(view.text)
            if tail is not None:
                cut = min(cut, view.start(tail.start()))
        tail = OPEN_TAIL.search(buf)
        if tail is not None:
            cut = min(cut, tail.start())
        if cut == 0:
            self.pending = buf
            return ""
        hits = self.r._hits(buf, view)
        for h in hits:  # keep a match's leading context with it, or the next pass cannot recognise it
            if h.context < cut <= h.start:
                cut = h.context
        if cut == 0:
            self.pending = buf
            return ""
        out, cut = self.r._apply(buf, hits, cut)
        self.findings.extend(self.r.finding(h) for h in hits if h.start < cut)
        self.pending = buf[cut:]
        return out

    def flush(self) -> str:
        out, found = self.r.redact(self.pending)
        self.findings.extend(found)
        self.pending = ""
        return out
