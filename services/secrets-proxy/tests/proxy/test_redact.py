"""The leak corpus: every way a secret may travel is caught, split or whole; ordinary text is left alone."""

import base64
import json
import random
import string
from urllib.parse import quote, quote_plus

import pytest

from letsbe_secrets_proxy.proxy.redact import Redactor, StreamRedactor

DB = "Sup3r/S3cret+pw!"
NC = "nc-admin-7f3a9c2e1b"
SMTP = "smtp-P@ss w0rd&more"
REGISTRY = {"db_password": DB, "nextcloud_admin": NC, "smtp_password": SMTP}

PEM = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB\n"
       "aFDrBz9vFqU4yq5VdwbDk2Lb+8hrKq9RcvS0/oYQJ5Ns1xGQG2gVmXbYl1Lz+3Uw\n-----END RSA PRIVATE KEY-----")
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0"
       ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
# Recognisable shapes; each built at run time so no scanner mistakes this file for a leak.
AWS_ID = "AKIA" + "IOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
GCP = "AIza" + "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"
STRIPE = "sk_" + "live_" + "51H8xYzAbCdEfGhIjKlMnOpQr"
GITHUB = "ghp_" + "1234567890abcdefghijABCDEFGHIJ123456"
SLACK = "xoxb-" + "123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
LLM = "sk-proj-" + "Ab3dEf6hIj9lMn2pQr5tUv8xYz1bCd4fGh7"


@pytest.fixture(scope="module")
def r() -> Redactor:
    return Redactor(REGISTRY)


def _b64_in(prefix: bytes, value: str, suffix: bytes = b"", urlsafe: bool = False) -> str:
    enc = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    return enc(prefix + value.encode() + suffix).decode()


# (description, text, the secret value that must not survive in any form)
CORPUS = [
    ("plain", f"the password is {DB} ok", DB),
    ("at start and end", f"{NC}", NC),
    ("with spaces and symbols", f"smtp: {SMTP}", SMTP),
    ("json-escaped once", json.dumps({"pw": DB}), DB),
    ("json inside a json string (tool result)", json.dumps(json.dumps({"config": {"password": DB}})), DB),
    ("url-encoded", "https://x.test/?p=" + quote(DB, safe=""), DB),
    ("url-encoded plus form", "a=" + quote_plus(SMTP), SMTP),
    ("url-encoded lowercase hex", quote(DB, safe="").replace("%2F", "%2f").replace("%2B", "%2b"), DB),
    ("hex", "dump " + DB.encode().hex(), DB),
    ("HEX upper", DB.encode().hex().upper(), DB),
    ("base64 whole", base64.b64encode(DB.encode()).decode(), DB),
    ("base64 offset 1", _b64_in(b"x", DB, b"yz"), DB),
    ("base64 offset 2", _b64_in(b"pw", DB, b"!"), DB),
    ("base64 inside basic auth", "Authorization: Basic " + _b64_in(b"admin:", NC), NC),
    ("base64url offset 0", _b64_in(b"abc", SMTP, urlsafe=True), SMTP),
    ("base64url offset 1", _b64_in(b"abcd", SMTP, b"?", urlsafe=True), SMTP),
]


def _survives(secret: str, text: str) -> bool:
    """Does the secret, or any encoding of it the corpus uses, still appear in text?"""
    raw = secret.encode()
    forms = {secret, json.dumps(secret)[1:-1], json.dumps(json.dumps(secret)[1:-1])[1:-1], quote(secret, safe=""),
             quote_plus(secret), raw.hex(), raw.hex().upper()}
    for off in range(3):
        for enc in (base64.b64encode, base64.urlsafe_b64encode):
            b = enc(b"\0" * off + raw).decode().rstrip("=")
            forms.add(b[(off * 4 + 2) // 3 if off else 0: -2])  # a generous core of each alignment
    return any(f and f in text for f in forms) or secret.lower() in text.lower()


@pytest.mark.parametrize(("what", "text", "secret"), CORPUS, ids=[c[0] for c in CORPUS])
def test_registered_secrets_are_masked_in_every_form(r, what, text, secret):
    masked, found = r.redact(text)
    assert found and all(f.kind == "secret" for f in found)
    assert not _survives(secret, masked), masked


PATTERNS = [
    ("private_key", f"here is my key:\n{PEM}\nthanks"),
    ("private_key", "truncated: -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ"),
    ("aws_access_key", f"aws_access_key_id = {AWS_ID}"),
    ("aws_secret_key", f"aws_secret_access_key = {AWS_SECRET}"),
    ("gcp_api_key", f"key={GCP}&x=1"),
    ("stripe_key", f"STRIPE_SECRET_KEY={STRIPE}"),
    ("github_token", f"token {GITHUB}"),
    ("slack_token", f"SLACK={SLACK}"),
    ("llm_api_key", f"OPENAI_API_KEY={LLM}"),
    ("jwt", f"Authorization: Bearer {JWT}"),
    ("connection_password", "DATABASE_URL=postgresql://app:hunter2-Secret@db.internal:5432/app"),
    ("connection_password", "redis://:r3d1s-pass@127.0.0.1:6379/0"),
]


@pytest.mark.parametrize(("kind", "text"), PATTERNS, ids=[f"{k}-{i}" for i, (k, _) in enumerate(PATTERNS)])
def test_high_confidence_patterns_are_caught(r, kind, text):
    masked, found = r.redact(text)
    assert [f.kind for f in found] == [kind]
    assert f"[REDACTED:{kind}:" in masked
    for needle in ("MIIEpAIBAAKCAQEA0Z3VS5", "b3BlbnNzaC1rZXktdjE", AWS_ID, AWS_SECRET, GCP, STRIPE, GITHUB, SLACK,
                   LLM, JWT, "hunter2-Secret", "r3d1s-pass"):
        assert needle not in masked


def test_connection_string_keeps_everything_but_the_password(r):
    masked, _ = r.redact("postgresql://app:hunter2-Secret@db.internal:5432/app")
    assert masked.startswith("postgresql://app:[REDACTED:connection_password:")
    assert masked.endswith("@db.internal:5432/app")


def test_placeholders_are_stable_per_value_and_distinct_between_values(r):
    a1, _ = r.redact(f"x {GITHUB} y")
    a2, _ = r.redact(f"again {GITHUB}")
    b, _ = r.redact("token ghp_" + "0" * 36)
    tag = a1.split("[REDACTED:github_token:")[1][:8]
    assert tag in a2 and tag not in b


def test_registered_secret_becomes_a_secret_ref_the_wrapper_understands(r):
    assert r.redact(f"use {NC} to log in")[0] == "use SECRET_REF(nextcloud_admin) to log in"


ORDINARY = [
    "The quick brown fox jumps over the lazy dog. Meeting at 10:30 on 2026-11-27.",
    "Visit https://example.com/docs?page=2 or http://localhost:8080/ for more.",
    "def f(x):\n    return {'a': 1, 'b': [1, 2, 3]}\n",
    "sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "uuid 3f2b6c1e-8d4a-4c6b-9e1f-0a2b3c4d5e6f and -----BEGIN CERTIFICATE----- is public",
    "skip the sk- prefix talk; ghp_ is a prefix; AKIA alone is fine; eyJ is just base64 of {\"",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_is_left_alone(r, text):
    assert r.redact(text) == (text, [])


def test_short_secrets_are_reported_not_masked_everywhere():
    r = Redactor({"pin": "1234", "ok": "long-enough-value"})
    assert r.skipped == ["pin"]
    assert r.redact("room 1234")[0] == "room 1234"


def test_policy_can_block_a_class():
    r = Redactor(REGISTRY, {"jwt": "block"})
    _, found = r.redact(f"Bearer {JWT}")
    assert found[0].action == "block"
    assert Redactor(REGISTRY).redact(PEM)[1][0].action == "block"  # private keys block by default


def test_a_thousand_secrets_are_all_found():
    rng = random.Random(7)
    many = {f"s{i}": "".join(rng.choices(string.ascii_letters + string.digits, k=rng.randint(12, 40)))
            for i in range(1000)}
    r = Redactor(many)
    picks = rng.sample(sorted(many), 50)
    text = " filler ".join(many[p] for p in picks)
    masked, found = r.redact(text)
    assert sorted(f.name for f in found) == sorted(picks)
    assert not any(many[p] in masked for p in picks)


# --- streams ---------------------------------------------------------------------------------------------------

STREAM_TEXTS = [
    f"Sure, the database password is {DB} and the admin one is {NC}.",
    f"Key follows:\n{PEM}\nDone.",
    f"call with {JWT} now",
    f"conn postgresql://app:hunter2-Secret@db.internal/app end {GITHUB}!",
    f"b64: {_b64_in(b'user:', SMTP)} end",
]


def _stream(r: Redactor, pieces: list[str]) -> str:
    s = StreamRedactor(r)
    return "".join(s.feed(p) for p in pieces) + s.flush()


@pytest.mark.parametrize("text", STREAM_TEXTS, ids=range(len(STREAM_TEXTS)))
def test_secret_split_at_every_point_across_two_chunks_is_caught(r, text):
    whole, _ = r.redact(text)
    for cut in range(1, len(text)):
        out = _stream(r, [text[:cut], text[cut:]])
        assert out == whole, cut


@pytest.mark.parametrize("text", STREAM_TEXTS, ids=range(len(STREAM_TEXTS)))
def test_secret_streamed_a_character_at_a_time_is_caught(r, text):
    assert _stream(r, list(text)) == r.redact(text)[0]


def test_random_chunkings_give_the_same_result_as_the_whole(r):
    rng = random.Random(11)
    text = " ".join(STREAM_TEXTS) * 3
    whole = r.redact(text)[0]
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, 30)))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        assert _stream(r, pieces) == whole


def test_stream_holds_back_only_a_short_tail(r):
    s = StreamRedactor(r)
    released = s.feed("word " * 200)
    assert len(released) >= 1000 - r.hold  # not buffered whole
    assert len(s.pending) < r.hold



MULTIBYTE = ["Passwört für die Datenbank: ", "🔑🔑 ", "日本語のテキスト ", "\ud800 lone surrogate "]


@pytest.mark.parametrize("prefix", MULTIBYTE)
def test_secrets_after_multibyte_text_are_masked_at_the_right_place(r, prefix):
    masked, found = r.redact(f"{prefix}{DB} und {AWS_ID} ende")
    assert masked == f"{prefix}SECRET_REF(db_password) und [REDACTED:aws_access_key:" + masked.split(
        "[REDACTED:aws_access_key:")[1][:8] + "] ende"
    assert [f.kind for f in found] == ["secret", "aws_access_key"]


def test_a_secret_with_non_ascii_characters_is_masked_in_its_forms():
    secret = "Grüße-Ünïcode-Päss"
    r = Redactor({"umlaut": secret})
    for text in (f"x {secret} y", json.dumps({"p": secret}), quote(secret, safe=""), secret.encode().hex(),
                 base64.b64encode(b"u:" + secret.encode()).decode()):
        masked, found = r.redact(text)
        assert found and secret not in masked and quote(secret, safe="") not in masked, text


@pytest.mark.parametrize("text", [c[1] for c in CORPUS] + [p[1] for p in PATTERNS])
def test_a_large_body_scanned_in_pieces_finds_a_secret_across_every_boundary(r, text):
    # As a request body larger than one piece is scanned: JSON text, the secret wherever the pieces are cut.
    chunk = 512
    filler = "lorem ipsum dolor sit amet " * 200  # more than four pieces on either side: scanned in pieces
    body = json.dumps({"messages": [{"role": "user", "content": f"{filler} {text} {filler}"}]}).encode()
    assert r.has_hits(body.decode())
    at = body.index(json.dumps(text)[1:8].encode())
    hits = [r.has_hits_in(body[shift:], chunk) for shift in range(at - chunk + 1, at + 1, 7)]
    assert all(hits)
    assert not r.has_hits_in(json.dumps({"messages": [{"content": filler * 3}]}).encode(), chunk)


@pytest.mark.parametrize("text", [c[1] for c in CORPUS] + [p[1] for p in PATTERNS])
def test_a_body_scanned_whole_finds_every_kind_of_secret(r, text):
    # Up to four pieces a body is scanned whole: registered forms first (stopping at one), then patterns and the
    # decoded view; each kind must still be found there.
    filler = "lorem ipsum dolor sit amet " * 40
    body = json.dumps({"messages": [{"role": "user", "content": f"{filler} {text} {filler}"}]}).encode()
    assert r.has_hits_in(body)
    assert not r.has_hits_in(json.dumps({"messages": [{"content": filler * 3}]}).encode())


def test_a_large_body_with_multibyte_text_is_scanned_in_pieces(r):
    body = json.dumps({"c": "ü€😀 " * 400 + DB + " ü€😀" * 400}, ensure_ascii=False).encode()
    assert all(r.has_hits_in(body, chunk) for chunk in range(500, 520))
    assert not r.has_hits_in(json.dumps({"c": "ü€😀 " * 800}, ensure_ascii=False).encode(), 511)
