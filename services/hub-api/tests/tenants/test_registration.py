"""Registration tokens, agent credentials, rotation and revocation."""

import asyncio
import uuid

import httpx
from sqlalchemy import text

from hub_testing.tenants import enroll, mint_token
from letsbe_contracts import Envelope, decode
from letsbe_contracts.events import TenantAgentRegisteredV1


async def _register(client: httpx.AsyncClient, token: str, agent: str = "safety-wrapper") -> httpx.Response:
    return await client.post(
        "/api/v1/tenant/register",
        json={"registration_token": token, "agent": agent, "version": "1.2.3", "hostname": "vps-1"},
    )


async def test_registration_token_works_once(hub, admin):
    tenant_id, domain, token = await mint_token(hub, admin)
    first = await _register(hub, token)
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["tenant_id"] == str(tenant_id)
    assert body["api_key"].startswith("lba_")
    assert body["heartbeat_interval_seconds"] == 1

    again = await _register(hub, token)
    assert again.status_code == 401
    assert again.headers["content-type"].startswith("application/problem+json")
    assert again.json()["re_enrol"] is False

    me = await hub.get("/api/v1/tenant/me", headers={"Authorization": f"Bearer {body['api_key']}"})
    assert me.status_code == 200
    assert me.json() == {
        "tenant_id": str(tenant_id),
        "agent_id": body["agent_id"],
        "agent": "safety-wrapper",
        "domain": domain,
    }


async def test_registration_commits_the_agent_registered_event_the_provisioner_waits_for(hub, admin, sessions):
    tenant_id, _, token = await mint_token(hub, admin)  # the tenant's order id is its id here
    failed = await _register(hub, "lbr_" + "x" * 43)
    assert failed.status_code == 401
    body = (await _register(hub, token)).json()
    async with sessions() as s:
        rows = (
            await s.execute(
                text("SELECT envelope FROM hub.outbox WHERE subject = :s"), {"s": TenantAgentRegisteredV1.SUBJECT}
            )
        ).scalars()
        events = [decode(Envelope.model_validate(row)) for row in rows]
    assert events == [
        TenantAgentRegisteredV1(
            tenant_id=tenant_id, order_id=tenant_id, agent_id=uuid.UUID(body["agent_id"]), agent="safety-wrapper"
        )
    ], "one event, for the registration that succeeded"


async def test_two_concurrent_registrations_with_one_token_yield_one_agent(hub, admin):
    _, _, token = await mint_token(hub, admin)
    results = await asyncio.gather(*(_register(hub, token) for _ in range(5)))
    assert sorted(r.status_code for r in results) == [201, 401, 401, 401, 401]


async def test_expired_registration_token_is_refused(hub, admin, sessions):
    _, _, token = await mint_token(hub, admin)
    async with sessions() as s, s.begin():
        await s.execute(text("UPDATE hub.registration_tokens SET expires_at = now() - interval '1 second'"))
    r = await _register(hub, token)
    assert r.status_code == 401
    assert r.json()["re_enrol"] is False


async def test_minting_tokens_needs_the_enroll_scope(hub, sessions):
    from hub_testing.tenants import admin_token
    from letsbe_hub.auth.scopes import Scope

    reader = {"Authorization": f"Bearer {await admin_token(sessions, [Scope.FLEET_READ])}"}
    tid = uuid.uuid4()
    body = {"domain": "a.example.com", "order_id": str(tid), "tier": "lite", "region": "eu"}
    r = await hub.post(f"/api/v1/admin/tenants/{tid}/registration-tokens", json=body, headers=reader)
    assert r.status_code == 403
    r = await hub.post(f"/api/v1/admin/tenants/{tid}/registration-tokens", json=body)
    assert r.status_code == 401


async def test_tenant_view_shows_registered_agents_to_the_provisioner(hub, admin, sessions):
    from hub_testing.tenants import admin_token
    from letsbe_hub.auth.scopes import Scope

    provisioner = {"Authorization": f"Bearer {await admin_token(sessions, [Scope.TENANTS_ENROLL])}"}
    tenant_id, domain, token = await mint_token(hub, provisioner)
    view = (await hub.get(f"/api/v1/admin/tenants/{tenant_id}", headers=provisioner)).json()
    assert view["status"] == "PENDING" and view["agents"] == [] and view["domain"] == domain
    assert (await _register(hub, token)).status_code == 201
    view = (await hub.get(f"/api/v1/admin/tenants/{tenant_id}", headers=provisioner)).json()
    assert view["status"] == "ACTIVE"
    assert [a["agent"] for a in view["agents"]] == ["safety-wrapper"]


async def test_same_tenant_with_another_domain_is_a_conflict(hub, admin):
    tenant_id, _, _ = await mint_token(hub, admin)
    body = {"domain": "other.example.com", "order_id": str(tenant_id), "tier": "build", "region": "eu"}
    r = await hub.post(f"/api/v1/admin/tenants/{tenant_id}/registration-tokens", json=body, headers=admin)
    assert r.status_code == 409


async def test_revoked_agent_is_refused_and_told_to_re_enrol(hub, admin):
    a = await enroll(hub, admin)
    assert (await hub.get("/api/v1/tenant/me", headers=a.headers)).status_code == 200
    r = await hub.post(f"/api/v1/admin/tenants/{a.tenant_id}/agents/{a.agent_id}/revoke", headers=admin)
    assert r.status_code == 204
    for method, path, body in (
        ("GET", "/api/v1/tenant/me", None),
        ("POST", "/api/v1/tenant/heartbeat", {"seq": 1, "version": "1.0.0"}),
        ("GET", "/api/v1/tenant/commands", None),
    ):
        r = await hub.request(method, path, json=body, headers=a.headers)
        assert r.status_code == 401, (path, r.text)
        assert r.json()["re_enrol"] is True


async def test_unknown_key_is_told_to_re_enrol_and_missing_key_is_plain_401(hub):
    r = await hub.get("/api/v1/tenant/me", headers={"Authorization": "Bearer lba_nope"})
    assert r.status_code == 401 and r.json()["re_enrol"] is True
    r = await hub.get("/api/v1/tenant/me")
    assert r.status_code == 401 and "re_enrol" not in r.json()


async def test_re_enrolment_replaces_the_previous_agent_of_that_kind(hub, admin):
    first = await enroll(hub, admin)
    second = await enroll(hub, admin, tenant_id=first.tenant_id)
    assert (await hub.get("/api/v1/tenant/me", headers=first.headers)).status_code == 401
    assert (await hub.get("/api/v1/tenant/me", headers=second.headers)).status_code == 200
    # the other agent of the tenant is independent
    proxy = await enroll(hub, admin, tenant_id=first.tenant_id, agent="secrets-proxy")
    assert (await hub.get("/api/v1/tenant/me", headers=second.headers)).status_code == 200
    assert (await hub.get("/api/v1/tenant/me", headers=proxy.headers)).json()["agent"] == "secrets-proxy"


async def test_rotation_gives_a_new_key_and_keeps_the_old_one_for_a_grace_period(hub, admin, sessions):
    a = await enroll(hub, admin)
    r = await hub.post("/api/v1/tenant/credentials/rotate", headers=a.headers)
    assert r.status_code == 200
    new = {"Authorization": f"Bearer {r.json()['api_key']}"}
    assert (await hub.get("/api/v1/tenant/me", headers=new)).status_code == 200
    assert (await hub.get("/api/v1/tenant/me", headers=a.headers)).status_code == 200  # grace
    async with sessions() as s, s.begin():
        await s.execute(text("UPDATE hub.agent_credentials SET expires_at = now() WHERE expires_at IS NOT NULL"))
    assert (await hub.get("/api/v1/tenant/me", headers=a.headers)).status_code == 401
    assert (await hub.get("/api/v1/tenant/me", headers=new)).status_code == 200


async def test_invalid_registration_body_changes_nothing(hub, admin, sessions):
    _, _, token = await mint_token(hub, admin)
    r = await hub.post(
        "/api/v1/tenant/register",
        json={"registration_token": token, "agent": "root-shell", "version": "1", "hostname": "x"},
    )
    assert r.status_code == 422
    assert (await _register(hub, token)).status_code == 201  # the token was not consumed by the bad request
