"""A request body masked where the secrets stand (walk.redact_in_place): the same strings as parsing and walking
the whole document (redact_json) gives, every other byte as it came, and the walk whenever in place cannot be
sure."""

from __future__ import annotations

import json
import random
import string

import pytest

from letsbe_secrets_proxy.proxy.redact import Redactor
from letsbe_secrets_proxy.proxy.walk import IN_PLACE_BELOW, redact_in_place, redact_json

from .test_adversarial_corpus import CASES, IDS, PATTERN_CASES, SECRETS


@pytest.fixture(scope="module")
def r() -> Redactor:
    return Redactor(SECRETS)


def _masked(data: bytes, r: Redactor) -> tuple[bytes | None, object]:
    """What in place gives (None: it left the body to the walk), and what the walk gives."""
    out = redact_in_place(data, r, [])
    return out, redact_json(json.loads(data), r, [])


def _bodies(value: str) -> list[dict]:
    """``value`` where a request carries text: a message, a key, a tool result holding JSON, beside other text."""
    return [
        {"model": "m", "messages": [{"role": "user", "content": value}]},
        {"messages": [{"role": "tool", "content": json.dumps({"result": "a " + value + " b"})}], "stream": True},
        {value: 1, "list": ["x" + value + "y", "clean", 12]},
    ]


@pytest.mark.parametrize(("name", "enc", "dec", "secret_name"), CASES, ids=IDS)
@pytest.mark.parametrize("ensure_ascii", [True, False], ids=["ascii", "utf8"])
def test_every_encoding_of_every_secret_is_masked_in_place_as_the_walk_masks_it(
    r, name, enc, dec, secret_name, ensure_ascii
):
    for doc in _bodies(enc(SECRETS[secret_name])):
        data = json.dumps(doc, ensure_ascii=ensure_ascii).encode()
        out, walked = _masked(data, r)
        assert out is not None and out != data, out
        assert json.loads(out) == walked, out
        assert "SECRET_REF(" + secret_name + ")" in out.decode()


@pytest.mark.parametrize(("kind", "text"), PATTERN_CASES, ids=[k for k, _ in PATTERN_CASES])
def test_a_pattern_secret_gets_the_placeholder_the_walk_gives(r, kind, text):
    for doc in _bodies(text):
        out, walked = _masked(json.dumps(doc).encode(), r)
        assert out is not None and json.loads(out) == walked and f"[REDACTED:{kind}:" in out.decode()


@pytest.mark.parametrize(
    "raw",
    [
        '"Sup3r\\u002fS3\\u0063ret+pw!"',  # escapes inside the secret
        '"\\u0053up3r/S3cret+pw\\u0021"',  # an escape at either end
        '"Sup3r\\/S3cret+pw!"',  # "/" escaped, as some encoders do
        '"\\u0053\\u0075\\u0070\\u0033\\u0072\\u002f\\u0053\\u0033\\u0063\\u0072\\u0065\\u0074\\u002b\\u0070\\u0077\\u0021"',
        '"q\\"uo\\\\te-Gr\\u00FC\\u00dfe<>#"',  # odd_password: a quote, a backslash, upper- and lower-case hex
        '"q\\"uo\\\\te-Gr\\u00fc\\u00dfe\\u003c\\u003e#"',
    ],
)
def test_a_secret_split_across_json_escapes_is_masked_where_it_stands(r, raw):
    data = ('{"messages": [{"role": "user", "content": "see ' + raw[1:-1] + ' here"}]}').encode()
    out, walked = _masked(data, r)
    assert out is not None
    assert json.loads(out) == walked
    content = json.loads(out)["messages"][0]["content"]
    assert content.startswith("see SECRET_REF(") and content.endswith(") here")


def test_an_escaped_backslash_before_an_invisible_character_is_not_read_as_one_escape(r):
    # "\\\u200b" is a backslash, then a zero-width space: reading the run of backslashes as one escape lost the
    # backslash of odd_password, and the body went out as it came.
    data = json.dumps({"content": "\u200b".join(SECRETS["odd_password"])}).encode()
    out, walked = _masked(data, r)
    assert out is not None and json.loads(out) == walked == {"content": "SECRET_REF(odd_password)"}


def test_what_only_looks_like_a_secret_across_an_escape_is_left_as_the_walk_leaves_it():
    # "\u0041bcdefgh" is "Abcdefgh" to a parser: the registered "u0041bcdefgh" is not in it.
    r = Redactor({"tricky": "u0041bcdefgh", "db_password": SECRETS["db_password"]})
    data = b'{"a": "\\u0041bcdefgh", "b": "' + SECRETS["db_password"].encode() + b'"}'
    out, walked = _masked(data, r)
    assert walked == {"a": "Abcdefgh", "b": "SECRET_REF(db_password)"}
    assert out is None or json.loads(out) == walked


@pytest.mark.parametrize(
    "doc",
    [
        {"pin": 73519046, "c": "x"},  # a number that spells a secret
        {"aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},  # a match across a key and its value
        {"c": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----"},  # blocked: the walk says where
    ],
)
def test_what_cannot_be_masked_in_place_is_left_to_the_walk(doc):
    r = Redactor({"pin": "73519046"})
    assert redact_in_place(json.dumps(doc).encode(), r, []) is None


def test_a_clean_body_is_the_same_bytes_and_a_large_one_is_left_to_the_walk_only_with_a_secret(r):
    clean = json.dumps({"messages": [{"role": "user", "content": "nothing secret \\ here \u00fc"}]}).encode()
    assert redact_in_place(clean, r, []) is clean
    filler = "plain words " * (IN_PLACE_BELOW // 12)
    big_clean = json.dumps({"content": filler}).encode()
    assert redact_in_place(big_clean, r, []) is big_clean
    assert redact_in_place(json.dumps({"content": filler + SECRETS["db_password"]}).encode(), r, []) is None


def test_a_thousand_registered_secrets_ten_of_them_in_a_64_kb_body():
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + '-_/+!@"\\'
    secrets = {f"secret_{i:04d}": "".join(rng.choices(alphabet, k=rng.randint(12, 48))) for i in range(1000)}
    r = Redactor(secrets)
    words = ["invoice", "order", "meeting", "tomorrow", "report", "folder"]
    text = [rng.choice(words) for _ in range(9000)]
    leaked = rng.sample(sorted(secrets), 10)
    for name in leaked:
        text.insert(rng.randrange(len(text)), secrets[name])
    content = " ".join(text)
    doc = {
        "messages": [
            {"role": "user", "content": content[: len(content) // 2]},
            {"role": "tool", "content": json.dumps({"result": content[len(content) // 2 :]})},
        ]
    }
    data = json.dumps(doc).encode()
    assert len(data) > 64 * 1024
    findings: list = []
    out = redact_in_place(data, r, findings)
    assert out is not None
    assert json.loads(out) == redact_json(doc, r, [])
    assert sorted(f.name for f in findings) == sorted(leaked)
    parsed = json.loads(out)
    texts = parsed["messages"][0]["content"] + json.loads(parsed["messages"][1]["content"])["result"]
    assert not any(secrets[name] in texts for name in leaked)
