"""The Safety Wrapper as a real process, registered with a real hub process: a gated call waits for an operator's
approval on the hub, runs once, cannot be replayed; the hub's kill-switch command stops every call."""

import json
import uuid

import httpx

from letsbe_platform.testing import eventually
from letsbe_platform.testing.processes import ServiceProcess
from letsbe_safety_wrapper.tools.secrets import SecretStore

ADMIN = "lbh_test-admin-token-approvals-0123456789"
TOOLS_TOKEN = "agent-tools-token-live"


async def test_gated_call_is_approved_on_the_hub_and_runs_once_then_the_kill_switch_stops_calls(
    service_env, processes, tmp_path, receiver, secrets_key, policy_file
):
    rec, tool_port = receiver
    hub = ServiceProcess("letsbe_hub", service_env | {
        "LETSBE_HUB_BOOTSTRAP_ADMIN_TOKEN": ADMIN, "LETSBE_HUB_HEARTBEAT_INTERVAL_SECONDS": "1",
        "LETSBE_HUB_COMMAND_SWEEP_SECONDS": "0.5", "LETSBE_HUB_SHUTDOWN_GRACE_SECONDS": "1",
    }, port_env="LETSBE_HUB_PORT").start()
    processes.append(hub)
    await hub.wait_ready()
    SecretStore(tmp_path / "secrets.enc", secrets_key).put("ghost_key", "ghost-admin-key-live-0123", ["ghost"])
    tenant_id = uuid.uuid4()
    async with httpx.AsyncClient(base_url=hub.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10) as admin:
        r = await admin.post(f"/api/v1/admin/tenants/{tenant_id}/registration-tokens", json={
            "domain": "acme.example.com", "order_id": str(tenant_id), "tier": "build", "region": "eu"})
        (tmp_path / "token").write_text(r.json()["token"])
        sw = ServiceProcess("letsbe_safety_wrapper", {
            "LETSBE_SW_HUB_URL": hub.url, "LETSBE_SW_STATE_DIR": str(tmp_path / "sw"),
            "LETSBE_SW_REGISTRATION_TOKEN_FILE": str(tmp_path / "token"),
            "LETSBE_SW_DOCKER_SOCKET": str(tmp_path / "no-docker.sock"),
            "LETSBE_SW_USAGE_LEDGER_PATH": str(tmp_path / "usage.sqlite3"),
            "LETSBE_SW_BACKUP_STATUS_PATH": str(tmp_path / "backup-status.json"),
            "LETSBE_SW_TOOLS_TOKEN": TOOLS_TOKEN, "LETSBE_SW_TOOLS_POLICY_PATH": str(policy_file),
            "LETSBE_SW_TOOLS_DIR": str(tmp_path / "tools"), "LETSBE_SW_SECRETS_PATH": str(tmp_path / "secrets.enc"),
            "LETSBE_SW_SECRETS_KEY": secrets_key, "LETSBE_SW_TOOL_PORTS": json.dumps({"ghost": tool_port}),
        }, port_env="LETSBE_SW_PORT").start()
        processes.append(sw)
        await sw.wait_ready()

        async def registered():
            view = (await admin.get(f"/api/v1/admin/tenants/{tenant_id}")).json()
            return view.get("status") == "ACTIVE"

        await eventually(registered, timeout=20, every=0.1)
        async with httpx.AsyncClient(base_url=sw.url, headers={"Authorization": f"Bearer {TOOLS_TOKEN}"},
                                     timeout=10) as agent:
            call = {"tool": "ghost", "action": "posts.delete", "args": {"id": "42"}, "reason": "duplicate post"}
            r = await agent.post("/api/v1/tools/execute", json=call)
            assert r.status_code == 202, r.text
            approval_id = r.json()["approval_id"]

            [pending] = (await admin.get("/api/v1/admin/approvals", params={"tenant_id": str(tenant_id)})).json()[
                "items"]
            assert pending["id"] == approval_id and pending["status"] == "PENDING"
            assert pending["args_preview"] == {"id": "42"} and "duplicate post" in pending["reasons"]
            r = await admin.post(f"/api/v1/admin/approvals/{approval_id}/decision", json={"decision": "approve"})
            assert r.status_code == 200, r.text

            r = await agent.post("/api/v1/tools/execute", json={**call, "approval_id": approval_id})
            assert r.status_code == 200, r.text
            assert [(q["method"], q["path"]) for q in rec.requests] == [("DELETE", "/ghost/api/admin/posts/42/")]
            assert (await admin.get(f"/api/v1/admin/approvals/{approval_id}")).json()["status"] == "CONSUMED"
            r = await agent.post("/api/v1/tools/execute", json={**call, "approval_id": approval_id})
            assert r.status_code == 409 and len(rec.requests) == 1

            r = await admin.post(f"/api/v1/admin/tenants/{tenant_id}/commands", json={
                "type": "kill-switch", "params": {"engaged": True, "reason": "operator stop"},
                "idempotency_key": "ks-1"})
            assert r.status_code == 201, r.text
            command_id = r.json()["id"]

            async def done():
                return (await admin.get(f"/api/v1/admin/commands/{command_id}")).json()["status"] == "SUCCEEDED"

            await eventually(done, timeout=20, every=0.1)
            r = await agent.post("/api/v1/tools/execute", json={"tool": "ghost", "action": "posts.list"})
            assert r.status_code == 423 and r.json()["reason"] == "operator stop"
            assert len(rec.requests) == 1
