"""The LLM relay: a tenant's own key reaches the provider through the hub (which alone holds the platform key), every
call is metered against that tenant, and the key can be rotated (with a grace period) and revoked."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import openai
import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager
from sqlalchemy import text

from hub_testing.tenants import enroll, fast_hub_settings, mint_token
from letsbe_fakes import LoopbackServer
from letsbe_fakes.openai import FakeOpenAI
from letsbe_hub.app import create_app

PLATFORM_KEY = "sk-platform-provider-key-0123456789abcdef"


@pytest.fixture
def upstream() -> Iterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI(api_key=PLATFORM_KEY)
    with LoopbackServer(fake.app) as srv:
        yield fake, srv.url


@pytest_asyncio.fixture
async def hub(database_url, nats_url, bus_namespace, upstream) -> AsyncIterator[httpx.AsyncClient]:
    settings = fast_hub_settings(
        database_url, nats_url, bus_namespace,
        llm_upstream_base_url=upstream[1] + "/v1", llm_upstream_api_key=PLATFORM_KEY, llm_key_grace_seconds=60,
    )
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            yield client


def _client(hub: httpx.AsyncClient, key: str) -> openai.AsyncOpenAI:
    """The official client, talking to the in-process hub."""
    return openai.AsyncOpenAI(base_url="http://hub/api/v1/llm/v1", api_key=key, max_retries=0,
                              http_client=httpx.AsyncClient(transport=hub._transport))


async def _issue(hub: httpx.AsyncClient, admin: dict[str, str], tenant_id: uuid.UUID) -> dict:
    r = await hub.post(f"/api/v1/admin/tenants/{tenant_id}/llm-key", headers=admin)
    assert r.status_code == 201, r.text
    return r.json()


async def _usage(hub: httpx.AsyncClient, admin: dict[str, str], tenant_id: uuid.UUID) -> dict:
    r = await hub.get(f"/api/v1/admin/tenants/{tenant_id}/llm-usage", headers=admin)
    assert r.status_code == 200, r.text
    return r.json()


async def test_each_tenant_calls_with_its_own_key_and_is_metered_for_its_own_calls(hub, admin, upstream, sessions):
    fake, _ = upstream
    a, _, _ = await mint_token(hub, admin)
    b, _, _ = await mint_token(hub, admin)
    key_a, key_b = (await _issue(hub, admin, a))["key"], (await _issue(hub, admin, b))["key"]
    assert key_a.startswith("lbl_") and key_a != key_b
    async with sessions() as s:  # only the hash is kept
        stored = (await s.execute(text("SELECT key_hash FROM hub.llm_keys"))).scalars().all()
    assert len(stored) == 2 and key_a not in stored and key_b not in stored

    fake.usage = (30, 5)
    answer = await _client(hub, key_a).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == fake.reply
    fake.usage = (100, 40)
    stream = await _client(hub, key_a).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True})
    text_ = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text_ == fake.reply
    fake.usage = (7, 3)
    async with _client(hub, key_b).responses.stream(model="gpt-4o-mini", input="hello") as events:
        assert (await events.get_final_response()).usage.input_tokens == 7

    # The provider saw the platform key only, never a tenant's.
    assert {r["headers"]["authorization"] for r in fake.requests} == {f"Bearer {PLATFORM_KEY}"}
    usage_a, usage_b = await _usage(hub, admin, a), await _usage(hub, admin, b)
    assert (usage_a["tokens_in"], usage_a["tokens_out"], usage_a["requests"]) == (130, 45, 2)
    assert (usage_b["tokens_in"], usage_b["tokens_out"], usage_b["requests"]) == (7, 3, 1)
    assert [line["model"] for line in usage_a["lines"]] == ["gpt-4o-mini"]


async def test_unknown_and_revoked_keys_are_refused_and_spend_nothing(hub, admin, upstream):
    fake, _ = upstream
    tenant, _, _ = await mint_token(hub, admin)
    key = (await _issue(hub, admin, tenant))["key"]
    with pytest.raises(openai.AuthenticationError):
        await _client(hub, "lbl_not-a-key").chat.completions.create(model="m", messages=[])
    r = await hub.post(f"/api/v1/admin/tenants/{tenant}/llm-key/revoke", headers=admin)
    assert r.status_code == 204
    r = await hub.post("/api/v1/llm/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, json={})
    assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
    assert key not in r.text
    assert fake.requests == [] and (await _usage(hub, admin, tenant))["requests"] == 0


async def test_a_new_key_replaces_the_old_one_after_the_grace_period(hub, admin, sessions):
    tenant, _, _ = await mint_token(hub, admin)
    old = await _issue(hub, admin, tenant)
    assert old["previous_valid_until"] is None
    new = await _issue(hub, admin, tenant)
    assert new["previous_valid_until"] is not None
    for key in (old["key"], new["key"]):  # both work during the grace period
        r = await hub.post("/api/v1/llm/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                           json={"model": "gpt-4o-mini", "messages": []})
        assert r.status_code == 200, r.text
    async with sessions() as s, s.begin():
        await s.execute(text("UPDATE hub.llm_keys SET valid_until = now() WHERE valid_until IS NOT NULL"))
    r = await hub.post("/api/v1/llm/v1/chat/completions", headers={"Authorization": f"Bearer {old['key']}"}, json={})
    assert r.status_code == 401


async def test_the_secrets_proxy_rotates_its_own_key_and_no_other_agent_can(hub, admin):
    proxy = await enroll(hub, admin, agent="secrets-proxy")
    wrapper = await enroll(hub, admin, tenant_id=proxy.tenant_id, agent="safety-wrapper")
    r = await hub.post("/api/v1/tenant/llm-key", headers=wrapper.headers)
    assert r.status_code == 403
    r = await hub.post("/api/v1/tenant/llm-key", headers=proxy.headers)
    assert r.status_code == 201 and r.json()["key"].startswith("lbl_")


async def test_issuing_needs_the_enroll_scope_and_a_live_tenant(hub, admin, sessions):
    from hub_testing.tenants import admin_token
    from letsbe_hub.auth.scopes import Scope

    tenant, _, _ = await mint_token(hub, admin)
    reader = {"Authorization": f"Bearer {await admin_token(sessions, [Scope.FLEET_READ])}"}
    assert (await hub.post(f"/api/v1/admin/tenants/{tenant}/llm-key", headers=reader)).status_code == 403
    assert (await hub.post(f"/api/v1/admin/tenants/{uuid.uuid4()}/llm-key", headers=admin)).status_code == 404
    key = (await _issue(hub, admin, tenant))["key"]
    r = await hub.post(f"/api/v1/admin/tenants/{tenant}/decommission", headers=admin, json={"reason": "test"})
    assert r.status_code == 200, r.text
    r = await hub.post("/api/v1/llm/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, json={})
    assert r.status_code == 401
    assert (await hub.post(f"/api/v1/admin/tenants/{tenant}/llm-key", headers=admin)).status_code == 404
