"""Removing a tenant: its agents are cut off and every service is told, once."""

from sqlalchemy import select

from hub_testing.tenants import enroll
from letsbe_contracts import Envelope
from letsbe_hub.db import outbox
from letsbe_platform.db import unit_of_work


async def test_decommission_revokes_the_agents_and_emits_the_event_once(hub, admin, sessions):
    agent = await enroll(hub, admin)
    url = f"/api/v1/admin/tenants/{agent.tenant_id}/decommission"

    first = await hub.post(url, headers=admin, json={"reason": "customer cancelled"})
    again = await hub.post(url, headers=admin)
    assert first.status_code == again.status_code == 200, first.text
    assert first.json()["status"] == "DECOMMISSIONED"

    refused = await hub.get("/api/v1/tenant/me", headers=agent.headers)
    assert refused.status_code == 401 and refused.json()["re_enrol"] is True

    async with unit_of_work(sessions) as s:
        rows = (
            await s.execute(select(outbox.c.envelope).where(outbox.c.subject == "letsbe.tenant.decommissioned.v1"))
        ).all()
    assert len(rows) == 1
    env = Envelope.model_validate(rows[0].envelope)
    assert env.payload == {"tenant_id": str(agent.tenant_id), "domain": agent.domain, "reason": "customer cancelled"}


async def test_decommission_needs_fleet_write_and_an_existing_tenant(hub, admin, sessions):
    from hub_testing.tenants import admin_token
    from letsbe_hub.auth.scopes import Scope

    agent = await enroll(hub, admin)
    reader = {"Authorization": f"Bearer {await admin_token(sessions, [Scope.FLEET_READ])}"}
    url = f"/api/v1/admin/tenants/{agent.tenant_id}/decommission"
    assert (await hub.post(url)).status_code == 401
    assert (await hub.post(url, headers=reader)).status_code == 403
    missing = await hub.post("/api/v1/admin/tenants/00000000-0000-0000-0000-000000000000/decommission", headers=admin)
    assert missing.status_code == 404
    assert (await hub.get("/api/v1/tenant/me", headers=agent.headers)).status_code == 200  # nothing changed


async def test_a_decommissioned_tenant_takes_no_commands_not_even_a_key_rotation(hub, admin, sessions):
    agent = await enroll(hub, admin)
    await hub.post(f"/api/v1/admin/tenants/{agent.tenant_id}/decommission", headers=admin, json={"reason": "gone"})
    commands = f"/api/v1/admin/tenants/{agent.tenant_id}/commands"
    for body in (
        {"type": "rotate-credential", "params": {"credential": "tools-token"}},
        {"type": "restart", "params": {"containers": ["nextcloud"]}},
    ):
        refused = await hub.post(commands, headers=admin, json=body)
        assert refused.status_code == 409, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"].endswith("tenant-decommissioned")
    async with unit_of_work(sessions) as s:
        staged = (
            await s.execute(
                select(outbox.c.envelope).where(outbox.c.subject == "letsbe.tenant.key.rotation.requested.v1")
            )
        ).all()
    assert staged == []  # the provisioner was never asked to re-issue a key
    listed = await hub.get(commands, headers=admin)
    assert listed.status_code == 200 and listed.json()["items"] == []
