"""A request body's ``stream`` members read without parsing the document: the same answer json.loads gives, or
none (then json.loads decides)."""

import json

import pytest

from letsbe_secrets_proxy.proxy.body import PARSE_BELOW, object_flags

BIG = "x" * 100_000
VALID = [
    '{}', ' {"model": "m"} \n', '{"stream": true}', '{"stream": false, "stream_options": {"include_usage": true}}',
    '{"messages": [{"role": "user", "content": "hi \\"there\\" \\u00fc \\n"}], "stream": true}',
    '{"stream": true, "stream": false}',  # the last one wins
    '{"str\\u0065am": true}',  # an escaped name is the same name
    '{"a": [1, -2.5e+3, 0, true, false, null, NaN, Infinity, -Infinity, [], {}, [[{"b": []}]]], "stream": 1}',
    '{"stream_options": {"include_usage": false, "x": [1, {"y": "}"}]}, "stream": "yes"}',
    '{"c": "' + BIG + '", "stream": true}',
    '{"c": "ü€😀", "stream": null}',
    '{"c": "\\ud800"}',
]
INVALID = [
    '', ' ', '[]', '"x"', '1', 'null', '{', '}', '{"a"}', '{"a":}', '{"a": 1,}', '{,}', '{"a": 1 "b": 2}',
    '{"a": [1,]}', '{"a": [1 2]}', '{"a": 01}', '{"a": 1.}', '{"a": -}', '{"a": tru}', '{"a": -NaN}',
    '{"a": "x\ny"}', '{"a": "\\x"}', '{"a": "\\u12"}', '{a: 1}', "{'a': 1}", '{"a": 1} x', '{"a": 1}{}',
    '{"a": [}', '{"a": {]}', '{1: 2}', '{"a" 1}', '{"a":: 1}',
]


# Every body through both ways: parsed (a small body) and tokenized (a large one).
WAYS = pytest.mark.parametrize("parse_below", [PARSE_BELOW, 0], ids=["parsed", "tokenized"])


@WAYS
@pytest.mark.parametrize("text", VALID)
def test_an_object_gives_the_members_json_loads_gives(text, parse_below):
    body = json.loads(text)
    assert object_flags(text.encode(), parse_below) == {k: body[k] for k in ("stream", "stream_options") if k in body}


@WAYS
@pytest.mark.parametrize("text", INVALID)
def test_anything_else_is_left_to_json_loads(text, parse_below):
    assert object_flags(text.encode(), parse_below) is None
    try:
        assert not isinstance(json.loads(text), dict)
    except ValueError:
        pass


@WAYS
def test_invalid_utf8_and_deep_nesting_are_left_to_json_loads(parse_below):
    assert object_flags(b'{"a": "\xff"}', parse_below) is None
    assert object_flags(b'{"a": ' + b"[" * 600 + b"]" * 600 + b"}", 0) is None
    assert object_flags(b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}") is None
