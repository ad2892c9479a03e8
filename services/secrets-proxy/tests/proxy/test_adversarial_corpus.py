"""An attacker's corpus against the redactor: every registered secret in every encoding a browser, Python's
defaults or a JSON encoder produce (and layers of them), whole or split at every point of a stream, in keys as
well as values. Each case has its own decoder, so "nothing leaked" is checked independently of the redactor."""

from __future__ import annotations

import html
import json
import unicodedata
from collections.abc import Callable
from functools import partial
from urllib.parse import quote, quote_plus, unquote, unquote_plus

import pytest

from letsbe_secrets_proxy.proxy.redact import Redactor, StreamRedactor
from letsbe_secrets_proxy.proxy.walk import redact_json

# Each secret exercises different characters: URL-reserved (/ + !), space, @ and &, and quote, backslash and
# non-ASCII (JSON escapes them; at depth n a backslash becomes 2^n of them).
SECRETS = {
    "db_password": "Sup3r/S3cret+pw!",
    "smtp_password": "smtp-P@ss w0rd&more",
    "odd_password": 'q"uo\\te-Grüße<>#',
}


@pytest.fixture(scope="module")
def r() -> Redactor:
    return Redactor(SECRETS)


def _every_byte(s: str, case: Callable[[int, str], str] = lambda i, h: h.upper()) -> str:
    return "".join(f"%{case(i, f'{b:02x}')}" for i, b in enumerate(s.encode()))


def _entities(s: str, fmt: str) -> str:
    return "".join(fmt.format(ord(c)) for c in s)


_NAMED = {"/": "&sol;", "+": "&plus;", "!": "&excl;", "@": "&commat;", "&": "&amp;",
          '"': "&quot;", "\\": "&bsol;", "<": "&lt;", ">": "&gt;", "#": "&num;"}


def _named(s: str) -> str:
    return "".join(_NAMED.get(c, c) for c in s)


def _json_deep(s: str, depth: int, ensure_ascii: bool = True) -> str:
    doc: object = {"password": s}
    for _ in range(depth):
        doc = {"payload": json.dumps(doc, ensure_ascii=ensure_ascii)}
    return json.dumps(doc, ensure_ascii=ensure_ascii)


def _json_undeep(text: str, depth: int) -> str:
    doc = json.loads(text)  # the masked text must still be valid JSON, at every depth
    for _ in range(depth):
        doc = json.loads(doc["payload"])
    return doc["password"]


def _visible(text: str) -> str:
    return text.replace("\u200b", "").replace("\u00ad", "").replace("\ufeff", "")


def _times(fn: Callable[[str], str], n: int) -> Callable[[str], str]:
    def run(s: str) -> str:
        for _ in range(n):
            s = fn(s)
        return s
    return run


# (name, encode, decode): decode undoes encode, so a secret that survives shows up in decode(masked).
ENCODINGS: list[tuple[str, Callable[[str], str], Callable[[str], str]]] = [
    ("plain", lambda s: s, lambda t: t),
    ("quote (browser path, '/' kept)", lambda s: quote(s), unquote),
    ("quote safe=''", lambda s: quote(s, safe=""), unquote),
    ("quote_plus (form)", quote_plus, unquote_plus),
    ("every byte %XX", _every_byte, unquote),
    ("every byte %xx", lambda s: _every_byte(s, lambda i, h: h.lower()), unquote),
    ("every byte mixed-case hex", lambda s: _every_byte(s, lambda i, h: h[0].upper() + h[1].lower() if i % 2
                                                         else h[0].lower() + h[1].upper()), unquote),
    ("quote twice", lambda s: quote(quote(s, safe=""), safe=""), _times(unquote, 2)),
    ("every byte, three times", _times(lambda s: _every_byte(s), 3), _times(unquote, 3)),
    ("html.escape", html.escape, html.unescape),
    ("decimal entities", lambda s: _entities(s, "&#{};"), html.unescape),
    ("decimal entities, zero-padded, no ';'", lambda s: _entities(s, "&#000{}"), html.unescape),
    ("hex entities", lambda s: _entities(s, "&#x{:x};"), html.unescape),
    ("HEX entities &#X", lambda s: _entities(s, "&#X{:X};"), html.unescape),
    ("named entities", _named, html.unescape),
    ("entities inside %-encoding", lambda s: quote(_entities(s, "&#x{:x};"), safe=""),
     lambda t: html.unescape(unquote(t))),
    ("%-encoding inside entities", lambda s: html.escape(quote(s, safe="")), lambda t: unquote(html.unescape(t))),
    *[(f"json nested {d} deep", partial(_json_deep, depth=d), partial(_json_undeep, depth=d)) for d in (0, 1, 2, 3, 5)],
    ("json nested 3 deep, ensure_ascii=False", lambda s: _json_deep(s, 3, ensure_ascii=False),
     lambda t: _json_undeep(t, 3)),
    ("%-encoded json", lambda s: quote(_json_deep(s, 2), safe=""), lambda t: _json_undeep(unquote(t), 2)),
    ("full-width look-alikes", lambda s: "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in s),
     partial(unicodedata.normalize, "NFKC")),
    ("zero-width characters between every character", lambda s: "\u200b".join(s), _visible),
    ("soft hyphens and a BOM", lambda s: "\ufeff" + "\u00ad".join(s), _visible),
    ("zero-width characters, json nested 2 deep", lambda s: _json_deep("\u200b".join(s), 2),
     lambda t: _visible(_json_undeep(t, 2))),
    ("full-width %-escapes", lambda s: "".join(f"％{b:02X}" for b in s.encode()), lambda t: unquote(
        unicodedata.normalize("NFKC", t))),
]
CASES = [(name, enc, dec, secret_name) for name, enc, dec in ENCODINGS for secret_name in SECRETS]
IDS = [f"{name}-{secret_name}" for name, _, _, secret_name in CASES]


def _assert_masked(masked: str, dec: Callable[[str], str], secret_name: str) -> None:
    secret = SECRETS[secret_name]
    decoded = dec(masked)
    assert secret not in decoded, masked
    assert secret not in masked, masked
    assert f"SECRET_REF({secret_name})" in decoded, masked


@pytest.mark.parametrize(("name", "enc", "dec", "secret_name"), CASES, ids=IDS)
def test_every_encoding_of_every_secret_is_masked(r, name, enc, dec, secret_name):
    text = enc(SECRETS[secret_name])
    masked, found = r.redact(text)
    assert [f.name for f in found] == [secret_name], masked
    _assert_masked(masked, dec, secret_name)


@pytest.mark.parametrize(("name", "enc", "dec", "secret_name"), CASES, ids=IDS)
def test_every_encoding_split_at_every_point_of_a_stream_is_masked(r, name, enc, dec, secret_name):
    text = enc(SECRETS[secret_name])
    for cut in range(1, len(text)):
        s = StreamRedactor(r)
        out = s.feed(text[:cut]) + s.feed(text[cut:]) + s.flush()
        _assert_masked(out, dec, secret_name)


@pytest.mark.parametrize(("name", "enc", "dec", "secret_name"), CASES, ids=IDS)
def test_every_encoding_streamed_a_character_at_a_time_is_masked(r, name, enc, dec, secret_name):
    text = "the value is " + enc(SECRETS[secret_name]) + " and nothing else"
    s = StreamRedactor(r)
    out = "".join(s.feed(c) for c in text) + s.flush()
    assert out.startswith("the value is ") and out.endswith(" and nothing else")
    _assert_masked(out[len("the value is "):-len(" and nothing else")], dec, secret_name)


@pytest.mark.parametrize("secret_name", SECRETS)
def test_a_secret_used_as_a_key_at_any_depth_is_masked(r, secret_name):
    secret = SECRETS[secret_name]
    doc = {"a": [{"b": {secret: 1, quote(secret, safe=""): 2}}], json.dumps({secret: "v"}): "x"}
    findings: list = []
    out = redact_json(doc, r, findings)
    text = json.dumps(out, ensure_ascii=False)
    assert secret not in text and quote(secret, safe="") not in text
    assert len(findings) == 3


def test_a_mask_does_not_swallow_the_text_around_an_encoded_secret(r):
    db = SECRETS["db_password"]
    assert r.redact("pw=" + _every_byte(db) + "&next=1")[0] == "pw=SECRET_REF(db_password)&next=1"
    assert r.redact("<b>" + _entities(db, "&#{};") + "</b>")[0] == "<b>SECRET_REF(db_password)</b>"
    nested = _json_deep(db, 3)
    assert _json_undeep(r.redact(nested)[0], 3) == "SECRET_REF(db_password)"


PATTERN_CASES = [
    ("github_token", "ghp_" + "1234567890abcdefghijABCDEFGHIJ123456"),
    ("aws_secret_key", "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("connection_password", "postgresql://app:hunter2-Secret@db.internal/app"),
]


@pytest.mark.parametrize(("kind", "text"), PATTERN_CASES, ids=[k for k, _ in PATTERN_CASES])
@pytest.mark.parametrize("how", ["every byte", "entities", "json 3 deep"])
def test_pattern_secrets_are_caught_through_encodings_too(r, kind, text, how):
    enc = {"every byte": _every_byte, "entities": lambda s: _entities(s, "&#x{:x};"),
           "json 3 deep": lambda s: _json_deep(s, 3)}[how]
    masked, found = r.redact(enc(text))
    assert kind in {f.kind for f in found}, masked
    assert f"[REDACTED:{kind}:" in masked


ORDINARY = [
    "50% off & free shipping + returns; see https://example.com/a%20b?x=1&y=2",
    "C:\\new\\table and \\\\server\\share, a \"quoted\" word &amp; an entity &copy; 2026",
    json.dumps(json.dumps({"html": "<p>Tom &amp; Jerry</p>", "path": "a/b+c"})),
    "Grüße aus Köln, 日本語のテキスト, ＦＵＬＬ width, a soft\u00adhyphen",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_encoded_text_is_left_alone(r, text):
    assert r.redact(text) == (text, [])


def test_a_long_run_of_escapes_is_decoded_in_linear_time(r):
    import time

    text = "%41" * 100_000 + quote(SECRETS["db_password"], safe="") + "\\" * 100_000
    started = time.process_time()
    masked, found = r.redact(text)
    assert [f.name for f in found] == ["db_password"] and "SECRET_REF(db_password)" in masked
    assert time.process_time() - started < 5  # quadratic re-matching inside the run took minutes
