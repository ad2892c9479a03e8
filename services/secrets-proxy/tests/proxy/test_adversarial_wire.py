"""The proxy on the wire against a hostile upstream and a careless agent: secrets in headers both ways, in every
field of a streamed event (error events and fields nobody documented included), in every Responses delta type,
in SSE comment lines, in error and non-JSON bodies, split across events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from letsbe_fakes import LoopbackServer
from letsbe_fakes.openai import FakeOpenAI

from .conftest import SECRETS, Proxy, proxy_settings, start_proxy

DB, NC, SMTP = SECRETS["db_password"], SECRETS["nextcloud_admin"], SECRETS["smtp_password"]


@dataclass
class ScriptedUpstream:
    """An OpenAI-shaped upstream that answers exactly what the test scripts: status, headers, raw body or raw
    SSE events (each sent as its own network write)."""

    api_key: str = "sk-scripted-upstream-0123456789abcdefghijklmnop"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"{}"
    content_type: str = "application/json"
    events: list[bytes] | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def app(self) -> Starlette:
        async def answer(request: Request) -> Response:
            self.requests.append({"headers": dict(request.headers), "raw": await request.body()})
            if self.events is not None:
                async def gen() -> AsyncIterator[bytes]:
                    for e in self.events or []:
                        yield e
                return StreamingResponse(gen(), status_code=self.status, headers=self.headers,
                                         media_type="text/event-stream")
            return Response(self.body, status_code=self.status, headers=self.headers, media_type=self.content_type)

        return Starlette(routes=[Route("/v1/chat/completions", answer, methods=["POST"]),
                                 Route("/v1/responses", answer, methods=["POST"])])


@pytest.fixture
def scripted() -> Iterator[ScriptedUpstream]:
    up = ScriptedUpstream()
    with LoopbackServer(up.app()) as srv:
        up.url = srv.url
        yield up


@pytest.fixture
async def sp(tmp_path: Path, scripted: ScriptedUpstream) -> AsyncIterator[Proxy]:
    async with start_proxy(proxy_settings(tmp_path, scripted), scripted) as p:  # type: ignore[arg-type]
        yield p


def _no_secret(text: str) -> None:
    for s in SECRETS.values():
        for form in (s, json.dumps(s)[1:-1], quote(s, safe=""), quote(s)):
            assert form not in text, (s, text)


def _sse(*objs: Any, name: str | None = None) -> list[bytes]:
    out = []
    for o in objs:
        head = f"event: {name or o.get('type')}\n" if name or (isinstance(o, dict) and "type" in o and
                                                               str(o["type"]).startswith("response.")) else ""
        out.append(f"{head}data: {o if isinstance(o, str) else json.dumps(o)}\n\n".encode())
    return out


def _chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}], **extra}


def _split(text: str, at: int) -> tuple[str, str]:
    return text[:at], text[at:]


# --- headers ---------------------------------------------------------------------------------------------------

RESPONSE_HEADERS = [
    ("x-request-id", f"req_{DB}"),
    ("x-request-id", quote(NC, safe="")),
    ("x-ratelimit-remaining-tokens", f"0; {SMTP}"),
    ("x-ratelimit-reset-requests", "".join(f"%{b:02X}" for b in DB.encode())),
    ("openai-processing-ms", f"&#x{ord(NC[0]):x};{NC[1:]}"),
    ("retry-after", DB),
]


@pytest.mark.parametrize(("name", "value"), RESPONSE_HEADERS, ids=[f"{n}-{i}" for i, (n, _) in
                                                                      enumerate(RESPONSE_HEADERS)])
@pytest.mark.parametrize("stream", [False, True])
async def test_secrets_in_response_headers_are_masked(sp, scripted, name, value, stream):
    scripted.headers = {name: value}
    if stream:
        scripted.events = _sse(_chunk({"content": "hi"}, "stop"), "[DONE]")
    else:
        scripted.body = json.dumps({"choices": []}).encode()
    r = await sp.chat({"stream": stream, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 200
    assert name in r.headers and "SECRET_REF(" in r.headers[name]
    _no_secret(json.dumps(dict(r.headers)))


REQUEST_HEADERS = ["openai-organization", "openai-project", "openai-beta", "idempotency-key"]


@pytest.mark.parametrize("name", REQUEST_HEADERS)
async def test_secrets_in_forwarded_request_headers_are_masked(sp, scripted, name):
    r = await sp.chat({"messages": [{"role": "user", "content": "x"}]},
                      headers={name: f"org-{quote(DB, safe='')}", "accept": f"application/json;q={NC}"})
    assert r.status_code == 200
    sent = scripted.requests[0]["headers"]
    assert sent[name] == "org-SECRET_REF(db_password)"
    _no_secret(json.dumps(sent))


# --- streamed chat: every field, known or not ---------------------------------------------------------------

CHAT_STREAMS = {
    "content split": [_chunk({"content": "pw Sup3r/S3"}), _chunk({"content": "cret+pw! ok"}, "stop")],
    "unknown delta field split": [_chunk({"reasoning": "think nc-admin-"}), _chunk({"reasoning": "7f3a9c2e1b ."}),
                                  _chunk({}, "stop")],
    "nested unknown delta field split": [_chunk({"audio": {"id": "a1", "transcript": "say Sup3r/"}}),
                                         _chunk({"audio": {"transcript": "S3cret+pw! now"}}), _chunk({}, "stop")],
    "tool arguments split, percent-encoded": [
        _chunk({"tool_calls": [{"index": 0, "id": "c1", "type": "function",
                                "function": {"name": "f", "arguments": '{"u": "' + quote(DB, safe="")[:7]}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": quote(DB, safe="")[7:] + '"}'}}]}),
        _chunk({}, "tool_calls")],
    "second tool call split": [
        _chunk({"tool_calls": [{"index": 1, "id": "c2", "type": "function",
                                "function": {"name": "g", "arguments": '{"p": "smtp-P@ss'}}]}),
        _chunk({"tool_calls": [{"index": 1, "function": {"arguments": ' w0rd&more"}'}}]}), _chunk({}, "stop")],
    "content split as entities": [_chunk({"content": "".join(f"&#{ord(c)};" for c in NC[:9])}),
                                  _chunk({"content": "".join(f"&#{ord(c)};" for c in NC[9:])}), _chunk({}, "stop")],
    "error event": [{"error": {"message": f"upstream failed for key {DB}", "type": "server_error",
                               "param": {"deep": [{"k": NC}]}}}],
    "unknown top-level field": [_chunk({"content": "x"}, x_debug={"prompt": f"password {SMTP}"}),
                                _chunk({}, "stop")],
    "secret as a key": [_chunk({"content": "x"}, meta={DB: True}), _chunk({}, "stop")],
    "secret in the finish reason": [_chunk({"content": "x"}, f"stop:{NC}")],
    "non-JSON data": [f"not json {DB}"],
    "JSON that is not an object": [[DB, {"a": NC}]],
}


@pytest.mark.parametrize("events", CHAT_STREAMS.values(), ids=CHAT_STREAMS.keys())
async def test_streamed_chat_events_never_carry_a_secret(sp, scripted, events):
    scripted.events = [*_sse(*events), b"data: [DONE]\n\n"]
    r = await sp.chat({"stream": True, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 200
    _no_secret(r.text)
    assert "SECRET_REF(" in r.text
    assert r.text.endswith("data: [DONE]\n\n")


async def test_split_content_is_reassembled_with_the_placeholder(sp, scripted):
    events = CHAT_STREAMS["tool arguments split, percent-encoded"]
    scripted.events = [*_sse(*events), b"data: [DONE]\n\n"]
    r = await sp.chat({"stream": True, "messages": [{"role": "user", "content": "x"}]})
    chunks = [json.loads(line[6:]) for line in r.text.split("\n") if line.startswith("data: {")]
    args = "".join(tc["function"].get("arguments", "") for c in chunks for ch in c["choices"]
                   for tc in ch["delta"].get("tool_calls", []))
    assert json.loads(args) == {"u": "SECRET_REF(db_password)"}
    names = [tc["function"].get("name") for c in chunks for ch in c["choices"]
             for tc in ch["delta"].get("tool_calls", []) if "name" in tc.get("function", {})]
    assert names == ["f"]  # identifiers go through whole, not held back


SSE_LINES = [
    f": keep-alive {DB}\n\n".encode(),
    f": {quote(NC, safe='')}\ndata: {json.dumps(_chunk({'content': 'a'}))}\n\n".encode(),
    f"id: {SMTP}\nretry: 1000\ndata: {json.dumps(_chunk({'content': 'a'}))}\n\n".encode(),
    f"event: {DB}\ndata: {json.dumps(_chunk({'content': 'a'}))}\n\n".encode(),
    f"id: {DB}\r\n: {NC}\r\n\r\n".encode(),
]


@pytest.mark.parametrize("raw", SSE_LINES, ids=range(len(SSE_LINES)))
async def test_sse_comment_id_and_event_lines_are_redacted(sp, scripted, raw):
    scripted.events = [raw, *_sse(_chunk({}, "stop")), b"data: [DONE]\n\n"]
    r = await sp.chat({"stream": True, "messages": [{"role": "user", "content": "x"}]})
    _no_secret(r.text)
    assert "SECRET_REF(" in r.text


# --- Responses: every delta type --------------------------------------------------------------------------------

DELTA_TYPES = [
    "response.output_text", "response.refusal", "response.function_call_arguments", "response.reasoning_text",
    "response.reasoning_summary_text", "response.audio.transcript", "response.mcp_call_arguments",
    "response.custom_tool_call_input", "response.code_interpreter_call_code", "response.some_future_thing",
]


@pytest.mark.parametrize("kind", DELTA_TYPES)
@pytest.mark.parametrize("with_done", [True, False])
async def test_every_responses_delta_type_is_redacted_across_events(sp, scripted, kind, with_done):
    text = f"the key is {quote(DB, safe='')} and {NC}."
    ids = {"item_id": "it_1", "output_index": 0, "content_index": 0}
    pieces = [text[:14], text[14:22], text[22:40], text[40:]]
    events = [{"type": f"{kind}.delta", "sequence_number": i, **ids, "delta": p} for i, p in enumerate(pieces)]
    if with_done:
        events.append({"type": f"{kind}.done", "sequence_number": len(pieces), **ids, "text": text})
    events.append({"type": "response.completed", "sequence_number": len(events),
                   "response": {"id": "r", "status": "completed", "usage": {"input_tokens": 1, "output_tokens": 2},
                                "output": [{"type": "message", "content": [{"type": "output_text", "text": text}]}]}})
    scripted.events = _sse(*events)
    r = await sp.responses({"stream": True, "input": "x"})
    _no_secret(r.text)
    objs = [json.loads(line[6:]) for line in r.text.split("\n") if line.startswith("data: ")]
    deltas = "".join(o["delta"] for o in objs if o["type"] == f"{kind}.delta")
    assert deltas == "the key is SECRET_REF(db_password) and SECRET_REF(nextcloud_admin)."
    seqs = [o["sequence_number"] for o in objs]
    assert len(seqs) == len(set(seqs))


async def test_responses_error_event_is_redacted(sp, scripted):
    scripted.events = _sse({"type": "error", "sequence_number": 0, "code": "bad", "message": f"leak {SMTP}",
                            "param": {NC: [DB]}})
    r = await sp.responses({"stream": True, "input": "x"})
    _no_secret(r.text)


# --- whole bodies: errors, non-JSON ---------------------------------------------------------------------------

BODIES = [
    (401, "application/json", json.dumps({"error": {"message": f"bad key {DB}", "param": {"nested": [
        json.dumps({"inner": json.dumps({"deeper": NC})})]}}})),
    (500, "text/plain", f"Internal error: password={quote(SMTP)} at db"),
    (502, "text/html", f"<html><body>proxy error &#x53;{DB[1:]}</body></html>"),
    (200, "application/json", json.dumps({"choices": [{"message": {"content": f"ok {NC}"}}], DB: 1})),
    (429, "application/json", json.dumps({"error": {"message": "slow down", "code": "".join(
        f"%{b:02x}" for b in NC.encode())}})),
]


@pytest.mark.parametrize(("status", "ctype", "body"), BODIES, ids=[f"{s}-{c}" for s, c, _ in BODIES])
@pytest.mark.parametrize("stream", [False, True])
async def test_error_and_non_json_bodies_are_redacted(sp, scripted, status, ctype, body, stream):
    scripted.status, scripted.content_type, scripted.body = status, ctype, body.encode()
    r = await sp.chat({"stream": stream, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == status
    _no_secret(r.text)
    assert "SECRET_REF(" in r.text


# --- the usage chunk ------------------------------------------------------------------------------------------


@pytest.fixture
async def fake_proxy(tmp_path: Path) -> AsyncIterator[Proxy]:
    fake = FakeOpenAI()
    with LoopbackServer(fake.app) as srv:
        fake.url = srv.url  # type: ignore[attr-defined]
        async with start_proxy(proxy_settings(tmp_path, fake), fake) as p:
            yield p


def _openai(p: Proxy) -> Any:
    import httpx
    import openai

    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=p.app))
    return openai.AsyncOpenAI(api_key="lbsp-sentinel-not-a-real-key", base_url="http://sp/v1", http_client=http,
                              max_retries=0)


async def test_the_openai_sdk_documented_stream_loop_works_through_the_proxy(fake_proxy):
    fake_proxy.upstream.chunks = ["The password ", "is Sup3r/S3", "cret+pw! ", "bye"]
    fake_proxy.upstream.usage = (21, 4)
    client = _openai(fake_proxy)
    stream = await client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                                  messages=[{"role": "user", "content": "tell me"}])
    text = ""
    async for chunk in stream:  # OpenAI's documented loop: every chunk has choices[0]
        text += chunk.choices[0].delta.content or ""
    assert text == "The password is SECRET_REF(db_password) bye"
    # The proxy still metered the call from the usage chunk it asked for.
    assert fake_proxy.upstream.requests[0]["body"]["stream_options"] == {"include_usage": True}
    assert await fake_proxy.usage() == [("gpt-4o-mini", 21, 4, 1)]


async def test_a_client_that_asks_for_usage_still_gets_the_usage_chunk(fake_proxy):
    fake_proxy.upstream.usage = (9, 3)
    client = _openai(fake_proxy)
    stream = await client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                                  stream_options={"include_usage": True},
                                                  messages=[{"role": "user", "content": "hi"}])
    chunks = [c async for c in stream]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (9, 3)
    assert all(c.choices for c in chunks[:-1])
    assert await fake_proxy.usage() == [("gpt-4o-mini", 9, 3, 1)]


async def test_the_openai_sdk_reads_a_non_streamed_answer_and_errors_through_the_proxy(fake_proxy):
    import openai

    fake_proxy.upstream.reply = f"It is {NC}."
    client = _openai(fake_proxy)
    answer = await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "?"}])
    assert answer.choices[0].message.content == "It is SECRET_REF(nextcloud_admin)."
    fake_proxy.upstream.api_key = "sk-rotated-elsewhere"
    with pytest.raises(openai.AuthenticationError):
        await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "?"}])


# --- token views and numbers ---------------------------------------------------------------------------------

def _token_logprobs(text: str) -> dict[str, Any]:
    return {"content": [{"token": text[i:i + 3], "logprob": -0.1, "bytes": list(text[i:i + 3].encode()),
                         "top_logprobs": [{"token": text[i:i + 3], "logprob": -0.1}]} for i in range(0, len(text), 3)]}


async def test_logprobs_that_spell_a_secret_token_by_token_are_not_passed_on(sp, scripted):
    scripted.body = json.dumps({"choices": [{"index": 0, "message": {"content": f"pw {DB}"},
                                             "logprobs": _token_logprobs(f"pw {DB}")}]}).encode()
    r = await sp.chat({"messages": [{"role": "user", "content": "x"}], "logprobs": True})
    assert r.json()["choices"][0] == {"index": 0, "message": {"content": "pw SECRET_REF(db_password)"},
                                      "logprobs": None}
    chunks = [{**_chunk({"content": DB[i:i + 3]}), "choices": [{"index": 0, "delta": {"content": DB[i:i + 3]},
                                                               "logprobs": _token_logprobs(DB[i:i + 3]),
                                                               "finish_reason": None}]}
              for i in range(0, len(DB), 3)]
    scripted.events = [*_sse(*chunks, _chunk({}, "stop")), b"data: [DONE]\n\n"]
    r = await sp.chat({"stream": True, "messages": [{"role": "user", "content": "x"}], "logprobs": True})
    assert '"logprobs": {' not in r.text and "SECRET_REF(db_password)" in r.text
    for i in range(0, len(DB) - 3, 3):
        assert json.dumps(DB[i:i + 3])[1:-1] + '"' not in r.text.replace('"content": "', "")
    scripted.events = _sse({"type": "response.output_text.delta", "sequence_number": 0, "item_id": "i",
                            "output_index": 0, "content_index": 0, "delta": "x",
                            "logprobs": _token_logprobs(DB)["content"]})
    r = await sp.responses({"stream": True, "input": "x"})
    assert DB[:3] not in r.text and DB[3:6] not in r.text


async def test_a_numeric_secret_sent_as_a_json_number_is_masked(sp, scripted):
    from letsbe_secrets_proxy.proxy.registry import write_store

    sp.app.state.proxy.registry._check_every = 0
    write_store(sp.settings.secrets_path, sp.settings.secrets_key.get_secret_value(),
                {**SECRETS, "door_pin": "8675309421"})
    r = await sp.chat({"messages": [{"role": "user", "content": "x"}], "metadata": {"pin": 8675309421}})
    assert r.status_code == 200
    assert b"8675309421" not in scripted.requests[-1]["raw"]
    scripted.body = json.dumps({"choices": [{"message": {"content": "ok"}}], "n": [8675309421]}).encode()
    r = await sp.chat({"messages": [{"role": "user", "content": "x"}]})
    assert "8675309421" not in r.text and r.json()["n"] == ["SECRET_REF(door_pin)"]


async def test_the_openai_sdk_streams_a_responses_answer_through_the_proxy(fake_proxy):
    fake_proxy.upstream.chunks = ["Here: Sup", "3r/S3cret", "+pw!", " done"]
    client = _openai(fake_proxy)
    stream = await client.responses.create(model="gpt-4o-mini", input="the password?", stream=True)
    deltas, final = "", None
    async for event in stream:
        if event.type == "response.output_text.delta":
            deltas += event.delta
        elif event.type == "response.completed":
            final = event.response
    assert deltas == "Here: SECRET_REF(db_password) done"
    assert final is not None and final.output_text == deltas


def _wire_encodings() -> list[tuple[str, Any, Any]]:
    from .test_adversarial_corpus import ENCODINGS

    return ENCODINGS


@pytest.mark.parametrize(("name", "enc", "dec"), _wire_encodings(), ids=[e[0] for e in _wire_encodings()])
async def test_a_secret_split_over_two_chunks_in_any_encoding_is_masked_on_the_wire(sp, scripted, name, enc, dec):
    encoded = enc(SMTP)
    for cut in (1, len(encoded) // 2, len(encoded) - 1):
        scripted.events = [*_sse(_chunk({"content": encoded[:cut]}), _chunk({"content": encoded[cut:]}),
                                 _chunk({}, "stop")), b"data: [DONE]\n\n"]
        r = await sp.chat({"stream": True, "messages": [{"role": "user", "content": "x"}]})
        chunks = [json.loads(line[6:]) for line in r.text.split("\n") if line.startswith("data: {")]
        text = "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"])
        assert SMTP not in dec(text) and "SECRET_REF(smtp_password)" in dec(text), (cut, text)
