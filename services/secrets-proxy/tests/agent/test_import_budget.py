"""The Secrets Proxy as production starts it (``python -m letsbe_secrets_proxy``, registered with a real hub,
proxying a call) loads no database, bus, CLI or provider code, no FastAPI (it serves its routes on plain
Starlette; FastAPI is loaded only to describe them in /openapi.json) and no pydantic (its settings and the agent
protocol's bodies are validated with msgspec: letsbe_agent.settings, letsbe_agent.wire): its container has 64 MB."""

import uuid

import httpx

from letsbe_fakes import LoopbackServer
from letsbe_fakes.openai import FakeOpenAI
from letsbe_platform.testing import eventually
from letsbe_platform.testing.imports import FORBIDDEN_IN_AGENTS, forbidden, loaded_modules, module_argv
from letsbe_platform.testing.processes import ServiceProcess

ADMIN = "lbh_test-admin-token-0123456789abcdef"
SENTINEL = "lbsp-sentinel-for-the-budget-test"
# Not in the proxy either (the Safety Wrapper has them): FastAPI and the OpenTelemetry API it loads at start-up,
# pydantic (about 13 MB with the contract models).
PROXY_ONLY = ("fastapi", "opentelemetry", "pydantic", "pydantic_core")


async def test_the_proxy_process_loads_no_database_bus_or_cli_code(service_env, processes, tmp_path):
    hub = ServiceProcess("letsbe_hub", service_env | {"LETSBE_HUB_BOOTSTRAP_ADMIN_TOKEN": ADMIN,
                                                      "LETSBE_HUB_HEARTBEAT_INTERVAL_SECONDS": "1"},
                         port_env="LETSBE_HUB_PORT").start()
    processes.append(hub)
    await hub.wait_ready()
    fake = FakeOpenAI()
    tenant = str(uuid.uuid4())
    with LoopbackServer(fake.app) as upstream:
        async with httpx.AsyncClient(base_url=hub.url, headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
            r = await admin.post(f"/api/v1/admin/tenants/{tenant}/registration-tokens",
                                 json={"domain": "budget.example.com", "order_id": tenant, "tier": "build",
                                       "region": "eu"})
            assert r.status_code == 201, r.text
            dump = tmp_path / "modules.json"
            sp = ServiceProcess("letsbe_secrets_proxy", {
                "LETSBE_SP_HUB_URL": hub.url, "LETSBE_SP_REGISTRATION_TOKEN": r.json()["token"],
                "LETSBE_SP_STATE_DIR": str(tmp_path / "sp"), "LETSBE_SP_USAGE_LEDGER_PATH": str(tmp_path / "u.db"),
                "LETSBE_SP_DOCKER_SOCKET": str(tmp_path / "no-docker.sock"), "LETSBE_SP_SENTINEL_KEY": SENTINEL,
                "LETSBE_SP_UPSTREAM_BASE_URL": upstream.url + "/v1", "LETSBE_SP_UPSTREAM_API_KEY": fake.api_key,
            }, port_env="LETSBE_SP_PORT", argv=module_argv("letsbe_secrets_proxy", dump)).start()
            processes.append(sp)
            await sp.wait_ready()

            async def beating() -> bool:
                view = (await admin.get(f"/api/v1/admin/tenants/{tenant}")).json()
                return any(a["agent"] == "secrets-proxy" and a["last_heartbeat_at"] for a in view.get("agents", []))

            await eventually(beating, "heartbeats", timeout=30, every=0.1)
        async with httpx.AsyncClient(base_url=sp.url, headers={"Authorization": f"Bearer {SENTINEL}"}) as client:
            for stream in (False, True):
                r = await client.post("/v1/chat/completions", json={
                    "model": "m", "stream": stream, "messages": [{"role": "user", "content": "hello"}]})
                assert r.status_code == 200, r.text
        modules = await loaded_modules(sp.proc.pid, dump)
    assert "letsbe_secrets_proxy.proxy.service" in modules  # it is the proxy that answered
    assert forbidden(modules, (*FORBIDDEN_IN_AGENTS, *PROXY_ONLY)) == []
