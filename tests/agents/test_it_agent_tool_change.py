"""The IT agent's tool change as real processes: the Safety Wrapper's ``letsbe`` / ``tools.add`` call waits for an
operator's approval on the hub, then the wrapper's hub executor starts the hub's tool-change job, once."""

import uuid
from importlib import resources

import httpx
from sqlalchemy import update

from hub_testing.orders import insert_order
from letsbe_hub.servers.models import Server
from letsbe_hub.tenants.models import Tenant
from letsbe_platform.db import unit_of_work
from letsbe_platform.testing import eventually
from letsbe_platform.testing.processes import ServiceProcess

ADMIN = "lbh_test-admin-token-approvals-0123456789"
TOOLS_TOKEN = "agent-tools-token-live"


async def test_the_it_agent_adds_a_tool_through_the_wrapper_only_once_a_person_approved_it(
    service_env, processes, tmp_path, sessions
):
    """letsbe.tools.add (shipped policy: RED) waits for an approval; once approved, the wrapper's hub executor asks
    the hub, which checks the consumed approval itself and starts the tool-change job; the approval is spent."""
    policy = tmp_path / "policy.json"
    policy.write_text(resources.files("letsbe_safety_wrapper.tools").joinpath("policy.json").read_text())
    hub = ServiceProcess("letsbe_hub", service_env | {
        "LETSBE_HUB_BOOTSTRAP_ADMIN_TOKEN": ADMIN, "LETSBE_HUB_SHUTDOWN_GRACE_SECONDS": "1",
    }, port_env="LETSBE_HUB_PORT").start()  # fmt: skip
    processes.append(hub)
    await hub.wait_ready()
    tenant_id = uuid.uuid4()
    await insert_order(sessions, "FULFILLED", id=tenant_id, tier="build", tools=["ghost"], domain="it.example.com")
    async with httpx.AsyncClient(base_url=hub.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10) as admin:
        r = await admin.post(f"/api/v1/admin/tenants/{tenant_id}/registration-tokens", json={
            "domain": "it.example.com", "order_id": str(tenant_id), "tier": "build", "region": "eu"})  # fmt: skip
        (tmp_path / "token").write_text(r.json()["token"])
        sw = ServiceProcess("letsbe_safety_wrapper", {
            "LETSBE_SW_HUB_URL": hub.url, "LETSBE_SW_STATE_DIR": str(tmp_path / "sw"),
            "LETSBE_SW_REGISTRATION_TOKEN_FILE": str(tmp_path / "token"),
            "LETSBE_SW_DOCKER_SOCKET": str(tmp_path / "no-docker.sock"),
            "LETSBE_SW_USAGE_LEDGER_PATH": str(tmp_path / "usage.sqlite3"),
            "LETSBE_SW_BACKUP_STATUS_PATH": str(tmp_path / "backup-status.json"),
            "LETSBE_SW_TOOLS_TOKEN": TOOLS_TOKEN, "LETSBE_SW_TOOLS_POLICY_PATH": str(policy),
            "LETSBE_SW_TOOLS_DIR": str(tmp_path / "tools"),
        }, port_env="LETSBE_SW_PORT").start()  # fmt: skip
        processes.append(sw)
        await sw.wait_ready()

        async def registered():
            return (await admin.get(f"/api/v1/admin/tenants/{tenant_id}")).json().get("status") == "ACTIVE"

        await eventually(registered, timeout=30, every=0.1)
        async with unit_of_work(sessions) as s:  # the tenant's server (the hub's allocation would have set it)
            server = Server(provider="hetzner", provider_ref="777001", name="it", tier="build", region="eu",
                            ipv4="127.0.0.9", host_key_fingerprint="SHA256:" + "Q" * 43, status="IN_USE",
                            order_id=tenant_id, tenant_id=tenant_id)  # fmt: skip
            s.add(server)
            await s.flush()
            await s.execute(update(Tenant).where(Tenant.id == tenant_id).values(server_id=server.id))

        async with httpx.AsyncClient(base_url=sw.url, headers={"Authorization": f"Bearer {TOOLS_TOKEN}"},
                                     timeout=10) as agent:  # fmt: skip
            call = {"tool": "letsbe", "action": "tools.add", "args": {"tool": "umami"}, "reason": "analytics"}
            r = await agent.post("/api/v1/tools/execute", json=call)
            assert r.status_code == 202 and r.json()["risk_class"] == "RED", r.text
            approval_id = r.json()["approval_id"]
            jobs = (await admin.get("/api/v1/admin/lifecycle/jobs", params={"tenant_id": str(tenant_id)})).json()
            assert jobs == []  # nothing happens before a person decides
            r = await admin.post(f"/api/v1/admin/approvals/{approval_id}/decision", json={"decision": "approve"})
            assert r.status_code == 200, r.text

            r = await agent.post("/api/v1/tools/execute", json={**call, "approval_id": approval_id})
            assert r.status_code == 200, r.text
            result = r.json()["result"]
            assert result["status_code"] == 202, result
            assert result["body"]["kind"] == "tool-change" and result["body"]["data"]["tool"] == "umami"
            assert result["body"]["data"]["approval_id"] == approval_id
            r = await agent.post("/api/v1/tools/execute", json={**call, "approval_id": approval_id})
            assert r.status_code == 409  # the approval is spent
            jobs = (await admin.get("/api/v1/admin/lifecycle/jobs", params={"tenant_id": str(tenant_id)})).json()
            assert [j["data"]["tool"] for j in jobs] == ["umami"]
