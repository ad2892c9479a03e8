"""Redact every string in a JSON document (message contents, tool results, tool-call arguments …), keys included,
and every number whose digits spell a registered secret (a PIN sent as a JSON number).

A request body is first masked where it stands (``redact_in_place``): one scan of its text, whose decoded view
undoes JSON's escapes as it undoes every other encoding, finds each secret and the span of the body it occupies;
when every one lies inside a single JSON string, only those spans are replaced and every other byte goes out as it
came. Parsing, walking (a scan per string) and serialising the whole document (``redact_json``) cost about half as
much again as the scan, and are left for what cannot be masked in place: a hit in a number, a match that runs
across members, a secret that blocks the request, a very large body.
"""

from __future__ import annotations

import json
from typing import Any

from letsbe_secrets_proxy.proxy.redact import REGISTRY_CLASS, Finding, Hit, Redactor

IN_PLACE_BELOW = 256 * 1024  # larger bodies are scanned a piece at a time (Redactor.has_hits_in), then walked


def redact_in_place(data: bytes, redactor: Redactor, findings: list[Finding]) -> bytes | None:
    """``data`` (UTF-8 JSON) with every secret in it masked, ``data`` itself if there is none, or None when that
    cannot be done in place, or something in it blocks the request (parse it and use ``redact_json``). ``findings``
    gets what was masked."""
    if len(data) >= IN_PLACE_BELOW:
        return None if redactor.has_hits_in(data) else data
    text = data.decode("utf-8")
    hits = redactor.hits_in_json(text)
    if not hits:
        return data
    found = [redactor.finding(h) for h in hits]
    if any(f.action == "block" for f in found):
        return None  # not sent: the walk says where each one is
    out, pos = [], 0
    strings = _Strings(text)
    for hit in hits:
        if not _in_place(text, hit, strings):
            return None
        out.append(text[pos:hit.start])
        out.append(json.dumps(redactor.placeholder(hit))[1:-1])
        pos = hit.end
    out.append(text[pos:])
    findings.extend(found)
    return "".join(out).encode("utf-8")


def _in_place(text: str, hit: Hit, strings: _Strings) -> bool:
    """Whether masking ``hit`` where it stands is what ``redact_json`` does to the string that holds it: the match
    (with its context) lies inside one string, starts and ends between escapes, and (for a pattern, whose
    placeholder is derived from the value) holds no escape, so it reads in the body as in the parsed string."""
    inside = strings.around(hit.context)
    if inside is None or hit.end > inside[1] or _in_escape(text, hit.start) or _in_escape(text, hit.end):
        return False
    return hit.kind == REGISTRY_CLASS or "\\" not in text[hit.context:hit.end]


class _Strings:
    """The JSON strings of a document, found in order as far as asked: a quote not escaped by a backslash opens or
    closes one (the document is valid JSON: it was parsed or tokenized already)."""

    def __init__(self, text: str):
        self.text = text
        self._from = 0  # where to look for the next quote
        self._last = (-1, -1)  # the last string found: (its opening quote, its closing quote)

    def around(self, pos: int) -> tuple[int, int] | None:
        """The (opening, closing) quotes of the string ``pos`` is in, or None if it is in none. Positions are asked
        for in increasing order."""
        while self._last[1] < pos:
            start = self._quote()
            if start < 0:
                return None
            end = self._quote()
            self._last = (start, end)
        return self._last if self._last[0] < pos else None

    def _quote(self) -> int:
        i = self.text.find('"', self._from)
        while i > 0 and _escaped(self.text, i):
            i = self.text.find('"', i + 1)
        self._from = i + 1 if i >= 0 else len(self.text)
        return i


def _escaped(text: str, i: int) -> bool:
    """Whether the character at ``i`` follows an odd run of backslashes (a JSON escape stands for it)."""
    j = i
    while j > 0 and text[j - 1] == "\\":
        j -= 1
    return (i - j) % 2 == 1


def _in_escape(text: str, pos: int) -> bool:
    """Whether ``pos`` falls inside a JSON escape (``\\n``, ``\\u00e9``) rather than before or after one."""
    for at in range(pos - 1, max(-1, pos - 6), -1):
        if text[at] == "\\" and not _escaped(text, at):
            return pos < at + (6 if text[at + 1: at + 2] == "u" else 2)
    return False


def redact_json(doc: Any, redactor: Redactor, findings: list[Finding], path: list[str] | None = None,
                where: list[str] | None = None) -> Any:
    """A copy of ``doc`` with secrets masked. ``findings`` gets what was found; ``where`` (if given) the JSON
    path of each finding, for an error message that says where without saying what."""
    if isinstance(doc, str):
        masked, found = redactor.redact(doc)
        if found:
            findings.extend(found)
            if where is not None:
                where.extend(_path(path) for _ in found)
        return masked
    if isinstance(doc, dict):
        out = {}
        for k, v in doc.items():
            key = redact_json(k, redactor, findings, path, where) if isinstance(k, str) else k
            out[key] = redact_json(v, redactor, findings, [*(path or []), str(k)] if where is not None else None,
                                   where)
        return out
    if isinstance(doc, list):
        return [
            redact_json(v, redactor, findings, [*(path or []), str(i)] if where is not None else None, where)
            for i, v in enumerate(doc)
        ]
    if isinstance(doc, int | float) and not isinstance(doc, bool) and abs(doc) >= 10 ** (redactor.min_form - 1):
        masked = redact_json(json.dumps(doc), redactor, findings, path, where)
        return masked if masked != json.dumps(doc) else doc
    return doc


def drop_token_views(doc: Any) -> Any:
    """``logprobs`` spell the answer one token at a time: a secret split over tokens cannot be masked there, so
    the proxy does not pass them on (the text itself is redacted as usual)."""
    if isinstance(doc, dict):
        return {k: None if k in TOKEN_VIEWS else drop_token_views(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [drop_token_views(v) for v in doc]
    return doc


TOKEN_VIEWS = frozenset({"logprobs", "top_logprobs"})


def _path(parts: list[str] | None) -> str:
    out = ""
    for p in parts or []:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "$"
