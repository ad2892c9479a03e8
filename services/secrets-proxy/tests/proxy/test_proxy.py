"""The pass-through end to end against the fake upstream: requests leave clean, answers come back clean,
the real key is attached only at egress, usage is counted."""

import base64
import json

import pytest

from letsbe_secrets_proxy.config import SecretsProxySettings
from letsbe_secrets_proxy.proxy.endpoints import build_proxy
from letsbe_secrets_proxy.proxy.upstream import UpstreamClient

SENTINEL = "lbsp-sentinel-not-a-real-key"
SECRETS = {"db_password": "Sup3r/S3cret+pw!", "nextcloud_admin": "nc-admin-7f3a9c2e1b",
           "smtp_password": "smtp-P@ss w0rd&more"}  # as in conftest

DB, NC, SMTP = SECRETS["db_password"], SECRETS["nextcloud_admin"], SECRETS["smtp_password"]
PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----"


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS.values() if s in text or json.dumps(s)[1:-1] in text]


def _sse_events(raw: str) -> list[tuple[str | None, str]]:
    events = []
    for block in raw.split("\n\n"):
        if not block.strip():
            continue
        name = next((ln[7:] for ln in block.split("\n") if ln.startswith("event: ")), None)
        data = "\n".join(ln[6:] for ln in block.split("\n") if ln.startswith("data: "))
        events.append((name, data))
    return events


async def test_request_secrets_are_masked_before_they_leave(proxy):
    tool_result = json.dumps({"rows": [{"user": "admin", "password": DB}], "dsn": f"mysql://root:{SMTP}@db/x"})
    r = await proxy.chat({"messages": [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": f"my nextcloud password is {NC}"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
            "name": "query", "arguments": json.dumps({"sql": "select 1", "auth": base64.b64encode(
                f"admin:{NC}".encode()).decode()})}}]},
        {"role": "tool", "tool_call_id": "c1", "content": tool_result},
    ]})
    assert r.status_code == 200, r.text
    [sent] = proxy.upstream.requests
    raw = sent["raw"].decode()
    assert _leaks(raw) == [] and base64.b64encode(f"admin:{NC}".encode()).decode()[8:24] not in raw
    msgs = sent["body"]["messages"]
    assert msgs[1]["content"] == "my nextcloud password is SECRET_REF(nextcloud_admin)"
    assert "SECRET_REF(db_password)" in msgs[3]["content"]
    json.loads(msgs[3]["content"])  # the tool result is still valid JSON after masking
    json.loads(msgs[2]["tool_calls"][0]["function"]["arguments"])


async def test_the_real_key_is_attached_at_egress_and_the_sentinel_never_leaves(proxy):
    await proxy.chat({"messages": [{"role": "user", "content": "hi"}]})
    [sent] = proxy.upstream.requests
    assert sent["headers"]["authorization"] == f"Bearer {proxy.upstream.api_key}"
    assert SENTINEL not in json.dumps(sent["headers"]) and SENTINEL not in sent["raw"].decode()


async def test_the_upstream_key_itself_is_redacted_if_the_agent_echoes_it(proxy):
    await proxy.chat({"messages": [{"role": "user", "content": f"key {proxy.upstream.api_key} and {SENTINEL}"}]})
    body = proxy.upstream.requests[0]["raw"].decode()
    assert proxy.upstream.api_key not in body and SENTINEL not in body


async def test_wrong_or_missing_sentinel_is_refused_and_nothing_is_sent(proxy):
    for headers in ({"Authorization": "Bearer sk-real-looking-key"}, {"Authorization": ""}):
        r = await proxy.client.post("/v1/chat/completions", json={"model": "m", "messages": []}, headers=headers)
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["error"]["code"] == "invalid_api_key"  # readable by an OpenAI client too
    assert proxy.upstream.requests == []


async def test_private_key_blocks_the_request_with_a_clear_problem(proxy):
    r = await proxy.chat({"messages": [{"role": "user", "content": "hi"},
                                       {"role": "tool", "tool_call_id": "x", "content": f"id_rsa:\n{PEM}"}]})
    assert r.status_code == 400
    problem = r.json()
    assert problem["type"].endswith("secrets-proxy-secret-blocked")
    assert problem["findings"] == [{"class": "private_key", "at": "messages[1].content"}]
    assert "MIIEvQIBADAN" not in r.text
    assert proxy.upstream.requests == []


async def test_policy_can_turn_a_class_into_a_block(another_proxy, upstream):
    async with another_proxy(redaction_policy={"secret": "block"}) as p:
        r = await p.chat({"messages": [{"role": "user", "content": f"pw {DB}"}]})
        assert r.status_code == 400
        assert r.json()["findings"] == [{"class": "secret", "at": "messages[0].content", "name": "db_password"}]
        assert DB not in r.text and upstream.requests == []


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"str"'])
async def test_a_body_that_is_not_a_json_object_is_400(proxy, body):
    r = await proxy.client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400 and proxy.upstream.requests == []


async def test_non_streamed_answer_is_redacted_and_usage_counted(proxy):
    proxy.upstream.reply = f"Your DB password is {DB}."
    proxy.upstream.usage = (120, 30)
    r = await proxy.chat({"messages": [{"role": "user", "content": "what is it?"}]})
    assert r.json()["choices"][0]["message"]["content"] == "Your DB password is SECRET_REF(db_password)."
    assert await proxy.usage() == [("gpt-4o-mini", 120, 30, 1)]


async def test_streamed_chat_with_a_secret_split_across_chunks_is_caught(proxy):
    proxy.upstream.chunks = ["The password ", "is Sup3r/S3", "cret+", "pw! and ", "nc-admin-7f", "3a9c2e1b", " bye"]
    proxy.upstream.usage = (50, 9)
    r = await proxy.chat({"stream": True, "messages": [{"role": "user", "content": "tell me"}]})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = _sse_events(r.text)
    assert events[-1][1] == "[DONE]"
    chunks = [json.loads(d) for _, d in events[:-1]]
    text = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c["choices"])
    assert text == "The password is SECRET_REF(db_password) and SECRET_REF(nextcloud_admin) bye"
    assert _leaks(r.text) == []
    # The proxy asked for the usage chunk and counted it.
    assert proxy.upstream.requests[0]["body"]["stream_options"] == {"include_usage": True}
    assert await proxy.usage() == [("gpt-4o-mini", 50, 9, 1)]


async def test_streamed_tool_call_arguments_are_checked_across_chunks(proxy):
    proxy.upstream.tool_call = ("send_mail", json.dumps({"password": SMTP}))
    args = json.dumps({"password": SMTP})
    proxy.upstream.tool_call_chunks = [args[:18], args[18:24], args[24:]]
    r = await proxy.chat({"stream": True, "messages": [{"role": "user", "content": "go"}]})
    chunks = [json.loads(d) for _, d in _sse_events(r.text)[:-1]]
    joined = "".join(tc["function"].get("arguments", "") for c in chunks for ch in c["choices"]
                     for tc in ch["delta"].get("tool_calls", []))
    assert json.loads(joined) == {"password": "SECRET_REF(smtp_password)"}
    assert _leaks(r.text) == []


async def test_streamed_responses_api_is_redacted_with_ordered_sequence_numbers(proxy):
    proxy.upstream.chunks = ["Here: Sup", "3r/S3cret", "+pw!", " done"]
    proxy.upstream.usage = (70, 4)
    r = await proxy.responses({"stream": True, "input": "the password?"})
    events = _sse_events(r.text)
    assert _leaks(r.text) == []
    objs = [json.loads(d) for _, d in events]
    assert all(name == o["type"] for (name, _), o in zip(events, objs, strict=True))
    deltas = "".join(o["delta"] for o in objs if o["type"] == "response.output_text.delta")
    done = next(o for o in objs if o["type"] == "response.output_text.done")
    assert deltas == done["text"] == "Here: SECRET_REF(db_password) done"
    seqs = [o["sequence_number"] for o in objs]
    assert seqs == sorted(set(seqs))
    assert await proxy.usage() == [("gpt-4o-mini", 70, 4, 1)]


async def test_non_streamed_responses_api_is_redacted(proxy):
    proxy.upstream.reply = f"pw {NC}"
    r = await proxy.responses({"input": [{"role": "user", "content": f"remember {DB}"}]})
    assert r.json()["output"][0]["content"][0]["text"] == "pw SECRET_REF(nextcloud_admin)"
    assert DB not in proxy.upstream.requests[0]["raw"].decode()


async def test_upstream_errors_pass_through_with_their_status(proxy):
    proxy.upstream.api_key = "sk-rotated-elsewhere"  # the upstream now refuses the key we hold
    r = await proxy.chat({"messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


async def test_unreachable_upstream_is_502(another_proxy):
    async with another_proxy(upstream_base_url="http://127.0.0.1:9/v1") as p:
        r = await p.chat({"messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 502 and r.json()["type"].endswith("secrets-proxy-upstream")


async def test_the_key_is_bound_to_its_host(proxy):
    settings = proxy.settings.model_copy(update={"upstream_key_host": "api.openai.com"})
    with pytest.raises(ValueError, match=r"bound to 'api\.openai\.com'"):
        build_proxy(settings, UpstreamClient(timeout=5))


async def test_registry_changes_are_picked_up_without_a_restart(proxy, tmp_path):
    from letsbe_secrets_proxy.proxy.registry import write_store

    proxy.app.state.proxy.registry._check_every = 0
    write_store(proxy.settings.secrets_path, proxy.settings.secrets_key.get_secret_value(),
                {**SECRETS, "new_token": "fresh-token-abcdef123"})
    await proxy.chat({"messages": [{"role": "user", "content": "fresh-token-abcdef123"}]})
    assert proxy.upstream.requests[-1]["body"]["messages"][0]["content"] == "SECRET_REF(new_token)"


def test_settings_refuse_an_unknown_policy_action():
    with pytest.raises(ValueError):
        SecretsProxySettings(redaction_policy={"jwt": "ignore"})


async def test_a_secret_hidden_behind_json_unicode_escapes_is_still_caught(proxy):
    hidden = "".join(f"\\u{ord(c):04x}" for c in DB)  # every character escaped: invisible to a raw byte scan
    raw = ('{"model": "m", "messages": [{"role": "user", "content": "pw ' + hidden + '"}]}').encode()
    r = await proxy.client.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 200
    assert proxy.upstream.requests[0]["body"]["messages"][0]["content"] == "pw SECRET_REF(db_password)"


async def test_a_clean_body_is_forwarded_byte_for_byte(proxy):
    raw = b'{"model":"m","messages":[{"role":"user","content":"nothing secret here"}],"temperature":0.2}'
    r = await proxy.client.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 200 and proxy.upstream.requests[0]["raw"] == raw


async def test_usage_is_in_the_shared_ledger_after_a_clean_shutdown(another_proxy, upstream):
    from datetime import UTC, datetime, timedelta

    from letsbe_agent.usage import UsageLedger

    upstream.usage = (9, 3)
    async with another_proxy() as p:
        for _ in range(3):
            await p.chat({"messages": [{"role": "user", "content": "hi"}]})
        path = p.ledger_path
    ledger = UsageLedger(path)  # no flush asked for: stopping the proxy wrote the last batch
    reports = ledger.pending(now=datetime.now(UTC) + timedelta(hours=1))
    ledger.close()
    assert [(ln.tokens_in, ln.tokens_out, ln.requests) for r in reports for ln in r.lines] == [(27, 9, 3)]
