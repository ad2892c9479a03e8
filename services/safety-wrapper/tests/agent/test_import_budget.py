"""The Safety Wrapper as production starts it (``python -m letsbe_safety_wrapper``, registered with a real hub,
its chat relay connected, gating tool calls) loads no database, bus, CLI or provider code."""

import json
import uuid

import httpx
from fastapi import FastAPI

from letsbe_fakes import LoopbackServer
from letsbe_platform.testing import eventually
from letsbe_platform.testing.imports import forbidden, loaded_modules, module_argv
from letsbe_platform.testing.processes import ServiceProcess

ADMIN = "lbh_test-admin-token-0123456789abcdef"
TOOLS_TOKEN = "lbsw-tools-token-for-the-budget-test"
POLICY = {
    "version": 1, "default_autonomy_level": 1,
    "autonomy_levels": {"1": {"name": "supervised", "execute": ["GREEN"]}},
    "approval_ttl_seconds": {"YELLOW": 600, "YELLOW_EXTERNAL": 600, "RED": 600, "CRITICAL_RED": 300},
    "default_limits": {"per_minute": 100, "loop_repeats": 10, "loop_window_seconds": 60},
    "tools": {"ghost": {"actions": {
        "posts.list": {"class": "GREEN", "http": {"method": "GET", "path": "/posts"}},
        "posts.update": {"class": "YELLOW", "http": {"method": "PUT", "path": "/posts/{id}"}},
    }}},
    "escalations": [],
}


async def test_the_wrapper_process_loads_no_database_bus_or_cli_code(service_env, processes, tmp_path):
    hub = ServiceProcess("letsbe_hub", service_env | {"LETSBE_HUB_BOOTSTRAP_ADMIN_TOKEN": ADMIN,
                                                      "LETSBE_HUB_HEARTBEAT_INTERVAL_SECONDS": "1"},
                         port_env="LETSBE_HUB_PORT").start()
    processes.append(hub)
    await hub.wait_ready()
    tool = FastAPI()

    @tool.get("/posts")
    async def posts() -> dict:
        return {"posts": []}

    tenant = str(uuid.uuid4())
    (tmp_path / "policy.json").write_text(json.dumps(POLICY))
    with LoopbackServer(tool) as tool_server:
        async with httpx.AsyncClient(base_url=hub.url, headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
            r = await admin.post(f"/api/v1/admin/tenants/{tenant}/registration-tokens",
                                 json={"domain": "budget.example.com", "order_id": tenant, "tier": "build",
                                       "region": "eu"})
            assert r.status_code == 201, r.text
            dump = tmp_path / "modules.json"
            sw = ServiceProcess("letsbe_safety_wrapper", {
                "LETSBE_SW_HUB_URL": hub.url, "LETSBE_SW_REGISTRATION_TOKEN": r.json()["token"],
                "LETSBE_SW_STATE_DIR": str(tmp_path / "sw"), "LETSBE_SW_TOOLS_DIR": str(tmp_path / "tools"),
                "LETSBE_SW_USAGE_LEDGER_PATH": str(tmp_path / "u.db"),
                "LETSBE_SW_DOCKER_SOCKET": str(tmp_path / "no-docker.sock"),
                "LETSBE_SW_BACKUP_STATUS_PATH": str(tmp_path / "backup-status.json"),
                "LETSBE_SW_TOOLS_TOKEN": TOOLS_TOKEN, "LETSBE_SW_TOOLS_POLICY_PATH": str(tmp_path / "policy.json"),
                "LETSBE_SW_TOOL_PORTS": json.dumps({"ghost": tool_server.port}),
                # The chat relay connects to the hub (its answers would go to this address: nothing is asked here).
                "LETSBE_SW_CHAT_URL": f"{tool_server.url}/v1/chat/completions",
            }, port_env="LETSBE_SW_PORT", argv=module_argv("letsbe_safety_wrapper", dump)).start()
            processes.append(sw)
            await sw.wait_ready()

            async def beating() -> bool:
                view = (await admin.get(f"/api/v1/admin/tenants/{tenant}")).json()
                return any(a["agent"] == "safety-wrapper" and a["last_heartbeat_at"] for a in view.get("agents", []))

            await eventually(beating, "heartbeats", timeout=30, every=0.1)
        async with httpx.AsyncClient(base_url=sw.url, headers={"Authorization": f"Bearer {TOOLS_TOKEN}"}) as client:
            ran = await client.post("/api/v1/tools/execute", json={"tool": "ghost", "action": "posts.list"})
            assert ran.status_code == 200, ran.text
            gated = await client.post("/api/v1/tools/execute",
                                      json={"tool": "ghost", "action": "posts.update", "args": {"id": "1"}})
            assert gated.status_code == 202, gated.text  # an approval asked of the hub
        modules = await loaded_modules(sw.proc.pid, dump)
    assert "letsbe_safety_wrapper.tools.service" in modules  # it is the wrapper that answered
    assert "letsbe_safety_wrapper.chat.relay" in modules  # with its chat relay running
    assert forbidden(modules) == []
