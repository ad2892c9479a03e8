"""The hub's answers that the DNS service and the provisioner read parse as their shared models (contracts.hub)."""

import uuid

from hub_testing.tenants import enroll
from letsbe_contracts.hub import AgentPrincipal, LlmKey, RegistrationToken, TenantStatus


async def test_the_answers_other_services_read_parse_as_their_contracts(hub, admin):
    tenant_id = uuid.uuid4()
    r = await hub.post(
        f"/api/v1/admin/tenants/{tenant_id}/registration-tokens",
        json={"domain": "contract.example.com", "order_id": str(tenant_id), "tier": "build", "region": "eu"},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    assert RegistrationToken.model_validate(r.json()).token == r.json()["token"]

    agent = await enroll(hub, admin)
    me = AgentPrincipal.model_validate((await hub.get("/api/v1/tenant/me", headers=agent.headers)).json())
    assert (me.tenant_id, me.agent_id, me.agent, me.domain) == (
        agent.tenant_id,
        agent.agent_id,
        "safety-wrapper",
        agent.domain,
    )

    status = TenantStatus.model_validate(
        (await hub.get(f"/api/v1/admin/tenants/{agent.tenant_id}", headers=admin)).json()
    )
    assert status.tenant_id == agent.tenant_id and status.registered("safety-wrapper")

    r = await hub.post(f"/api/v1/admin/tenants/{agent.tenant_id}/llm-key", headers=admin)
    assert r.status_code in (200, 201), r.text
    assert LlmKey.model_validate(r.json()).key
