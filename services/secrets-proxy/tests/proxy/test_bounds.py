"""What the proxy holds in memory is bounded whatever the traffic: one body by its cap (413 above it), a non-streamed
answer by its cap (502), a stream by what it may hold back, all bodies at once by the budget."""

from __future__ import annotations

import asyncio

import pytest

from letsbe_agent.settings import SettingsError
from letsbe_secrets_proxy.config import SecretsProxySettings
from letsbe_secrets_proxy.proxy.budget import ByteBudget

CAP = 64 * 1024


def _body_of(size: int) -> bytes:
    head, tail = b'{"model": "m", "messages": [{"role": "user", "content": "', b'"}]}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_body_over_the_cap_is_413_problem_json_and_nothing_is_sent(another_proxy, upstream, declared):
    async with another_proxy(max_request_bytes=CAP, body_budget_bytes=2 * CAP) as p:
        ok = await p.client.post("/v1/chat/completions", content=_body_of(CAP))
        assert ok.status_code == 200, ok.text
        sent = len(upstream.requests)

        async def chunks():
            body = _body_of(CAP + 1)
            for i in range(0, len(body), 4096):
                yield body[i:i + 4096]

        content = _body_of(CAP + 1) if declared else chunks()
        r = await p.client.post("/v1/chat/completions", content=content)
        assert r.status_code == 413
        assert r.headers["content-type"] == "application/problem+json"
        problem = r.json()
        assert problem["type"].endswith("secrets-proxy-too-large") and problem["status"] == 413
        assert str(CAP) in problem["detail"] and problem["error"]["code"] == "invalid_request_error"
        assert len(upstream.requests) == sent


async def test_a_non_streamed_answer_over_the_cap_is_refused_not_relayed(another_proxy, upstream):
    upstream.reply = "y" * (CAP + 1)
    async with another_proxy(max_response_bytes=CAP, body_budget_bytes=CAP * 16) as p:
        r = await p.chat({"messages": [{"role": "user", "content": "a long answer please"}]})
        assert r.status_code == 502
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"].endswith("secrets-proxy-upstream-too-large")
        assert "yyyy" not in r.text
        upstream.reply = "short"
        assert (await p.chat({"messages": [{"role": "user", "content": "again"}]})).status_code == 200


async def test_a_stream_that_holds_back_more_than_the_cap_is_stopped_without_leaking(another_proxy, upstream):
    # A private key's BEGIN line without its END: everything after it is held back until the END shows up.
    upstream.chunks = ["Here is the key: -----BEGIN RSA PRIVATE KEY-----\n"] + ["MIIEpAIBAAKCAQEA0Z3VS5JJ" * 40] * 20
    async with another_proxy(max_response_bytes=8 * 1024, body_budget_bytes=CAP) as p:
        r = await p.chat({"stream": True, "messages": [{"role": "user", "content": "show me the key"}]})
        assert r.status_code == 200
        assert "MIIEpAIBAAKCAQEA" not in r.text
        assert "stream_too_large" in r.text
        assert "data: [DONE]" not in r.text


async def test_bodies_held_at_once_never_exceed_the_budget():
    budget = ByteBudget(100)
    peak = 0

    async def call(n: int) -> None:
        nonlocal peak
        async with budget.hold(n):
            peak = max(peak, budget.held)
            await asyncio.sleep(0.001)

    await asyncio.gather(*(call(n) for n in [60, 60, 30, 100, 10, 90, 40] * 5))
    assert peak <= 100
    assert budget.held == 0


async def test_concurrent_bodies_beyond_the_budget_wait_and_all_get_through(another_proxy, upstream):
    async with another_proxy(max_request_bytes=CAP, body_budget_bytes=CAP) as p:
        answers = await asyncio.gather(*(p.client.post("/v1/chat/completions", content=_body_of(CAP - 100))
                                         for _ in range(6)))
        assert [a.status_code for a in answers] == [200] * 6
        assert p.app.state.proxy.budget.held == 0


def test_settings_refuse_a_budget_smaller_than_one_body():
    with pytest.raises(SettingsError, match="body_budget_bytes must be at least max_request_bytes"):
        SecretsProxySettings(max_request_bytes=2 * CAP, body_budget_bytes=CAP)
