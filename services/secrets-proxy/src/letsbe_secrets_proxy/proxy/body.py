"""A request body checked without holding it twice: is it one UTF-8 JSON object, and what are its top-level members
``stream`` and ``stream_options``?

``json.loads`` would build the whole document beside its text (a 1 MiB string value is then held twice, and the
text decoded from the bytes is a third copy while it is made). Here the bytes are only tokenized (a C regex per
token: a string of any length is matched, not copied) and just the two members are parsed. Anything this does not
accept is left to ``json.loads``, which then gives the answer (and its error) as before: this only ever says yes to
a body ``json.loads`` reads as an object.

A body below ``PARSE_BELOW`` is parsed with ``json.loads`` all the same: its copies are small, and the C parser
is several times faster than the tokenizer (whose regex steps through a string one character at a time).
"""

from __future__ import annotations

import codecs
import json
import re
from typing import Any

FLAGS = ("stream", "stream_options")
CHUNK = 64 * 1024  # the UTF-8 check decodes this much at a time
PARSE_BELOW = 256 * 1024

_TOKEN = re.compile(
    rb'[ \t\n\r]*(?:'
    rb'("[^"\\\x00-\x1f]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*)*")'  # 1: a string
    rb'|([{}\[\],:])'  # 2: punctuation
    rb'|(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null|NaN|-?Infinity)'  # 3: a scalar
    rb')'
)
_TRAILING = re.compile(rb"[ \t\n\r]*\Z")
_MAX_DEPTH = 500  # deeper is left to json.loads (which gives up somewhere past this)


def utf8(data: bytes) -> bool:
    if data.isascii():
        return True
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for i in range(0, len(data), CHUNK):
            decoder.decode(data[i:i + CHUNK], final=i + CHUNK >= len(data))
    except UnicodeDecodeError:
        return False
    return True


def object_flags(data: bytes, parse_below: int = PARSE_BELOW) -> dict[str, Any] | None:
    """The ``stream`` and ``stream_options`` members of ``data`` (those present; the last of a repeated name, as
    ``json.loads``), or None when ``data`` is not plainly one UTF-8 JSON object (ask ``json.loads`` then)."""
    if len(data) < parse_below:
        try:
            doc = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError too
            return None
        return {k: doc[k] for k in FLAGS if k in doc} if isinstance(doc, dict) else None
    if not utf8(data):
        return None
    stack: list[bytes] = []  # open containers, b"{" or b"["
    # What may come next: "value", "key", "colon", "next" (a comma or the close), or "first" (a key, a value or the
    # close, just after an opening bracket).
    expect = "value"
    key: bytes | None = None  # the name of the top-level member being read (as JSON)
    start = 0  # where its value starts
    found: dict[str, Any] = {}
    pos = 0
    while True:
        m = _TOKEN.match(data, pos)
        if m is None:
            return None
        # Which kind of token, and where: never the token itself (a 1 MiB string would be copied out).
        kind, at, pos = m.lastindex, m.start(m.lastindex or 0), m.end()
        string = kind == 1
        punct = data[at:pos] if kind == 2 else None
        in_object = bool(stack) and stack[-1] == b"{"
        if expect == "colon":
            if punct != b":":
                return None
            expect = "value"
            if len(stack) == 1:
                start = pos
            continue
        if punct in (b",", b"}", b"]"):
            if expect not in ("next", "first") or (expect == "first" and punct == b","):
                return None
            if (punct == b"}") != in_object and punct != b",":
                return None
            if len(stack) == 1 and key is not None and expect == "next":
                name = json.loads(key)
                if name in FLAGS:
                    found[name] = json.loads(data[start:at])
                key = None
            if punct == b",":
                expect = "key" if in_object else "value"
                continue
            stack.pop()
            if not stack:
                return found if _TRAILING.match(data, pos) else None
            expect = "next"
            continue
        if punct == b":":
            return None
        if in_object and expect in ("key", "first"):
            if not string:
                return None
            if len(stack) == 1:
                key = data[at:pos]
            expect = "colon"
            continue
        if expect not in ("value", "first"):
            return None
        if punct in (b"{", b"["):
            if not stack and punct != b"{":
                return None  # a body that is not an object: json.loads says so
            if len(stack) >= _MAX_DEPTH:
                return None
            stack.append(punct)
            expect = "first"
            continue
        if not stack:
            return None  # a scalar at the top
        expect = "next"
