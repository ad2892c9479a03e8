"""An operator rotates a provisioned tenant's AI-stack keys with one action (``letsbe-hub tenants
rotate-key``, a client of the hub's commands route). The hub hands the command to the provisioner, which stores a new
value, re-renders the env files of exactly the containers that use it on the sandbox VPS over SSH and recreates
exactly those; the sandbox runs the agents from the rendered files, so what answers afterwards is what was rendered.
The old value stops working, the secret store moves to the new key without losing a secret, and the tenant's
command history names the operator."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest
import pytest_asyncio

from letsbe_platform.bus import Bus
from letsbe_platform.devstack import free_port
from letsbe_platform.runner import SERVICES
from letsbe_platform.testing import eventually
from letsbe_safety_wrapper.tools.secrets import SecretStore
from letsbe_sandbox.plane import ControlPlane
from letsbe_sandbox.world import Ports

from .conftest import control_plane
from .test_ai_stack import env_file

GHOST_ADMIN_TOKEN = "6489f0c1e0d2a3b4:ghost-admin-secret-5f1e9c0d7a2b4e6f8091a2b3c4d5e6f7"
LETSBE_HUB = str(Path(sys.executable).parent / "letsbe-hub")


@pytest_asyncio.fixture
async def plane(sandbox_root: Path, service_env: dict[str, str], bus: Bus) -> AsyncIterator[ControlPlane]:
    """The sandbox plane, given time to start on a loaded machine (four services import at once)."""
    cp = control_plane(sandbox_root, Ports(*(free_port() for _ in range(4))), service_env, bus)
    try:
        await cp.start(*(s.name for s in SERVICES), ready_timeout=240)
        yield cp
    finally:
        cp.stop_all()
        cp.world.stop()


async def rotate_key(plane, tenant_id: str, key: str) -> dict:
    """The operator's one action: the CLI, which waits until the provisioner reports the outcome."""
    proc = await asyncio.create_subprocess_exec(
        LETSBE_HUB, "tenants", "rotate-key", tenant_id, key, "--timeout", "240", "--json",
        env={"PATH": "/usr/bin:/bin", "LETSBE_HUB_URL": plane.hub, "XDG_CONFIG_HOME": "/nonexistent",
             "LETSBE_HUB_TOKEN": plane.world.material.admin_token},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode == 0, (proc.returncode, out.decode(), err.decode())
    return json.loads(out)


async def heartbeating(plane, client: httpx.AsyncClient, tenant_id: str, timeout: float = 120) -> None:
    """Both agents have beaten (generous: a loaded machine starts Python processes slowly)."""
    agents: list = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                agents = (await plane.tenant(client, tenant_id))["agents"]
                if {a["agent"] for a in agents if a["last_heartbeat_at"]} == {"safety-wrapper", "secrets-proxy"}:
                    return
                await asyncio.sleep(0.3)
    except TimeoutError:
        raise AssertionError(f"agents did not both beat: {agents}\n{plane.logs()}") from None


async def answers(check, what: str, timeout: float = 90):
    """Wait until ``check()`` is true (a recreated agent takes a moment to listen again); fail naming ``what``."""
    await eventually(check, what, timeout=timeout, every=0.2)


def model_call(address: str, sentinel: str) -> str:
    llm = openai.OpenAI(base_url=f"http://{address}:8100/v1", api_key=sentinel, max_retries=0, timeout=30)
    reply = llm.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"The Ghost key is {GHOST_ADMIN_TOKEN}."}]
    )
    return reply.choices[0].message.content or ""


@pytest.mark.timeout(900)
async def test_an_operator_rotates_each_ai_stack_key_and_only_the_new_value_works(plane):
    world = plane.world
    async with httpx.AsyncClient(timeout=30) as client:
        created = await plane.order(client, "keys.example.com", ["ghost"])
        tenant_id = created["id"]
        await plane.pay(client, created["checkout_session_id"])
        await plane.wait_status(client, tenant_id, "FULFILLED")
        await heartbeating(plane, client, tenant_id)
    vps = world.vps_of_order(tenant_id)
    ai = vps.path("/opt/letsbe/ai")
    store = vps.path("/var/lib/letsbe/secrets/secrets.enc")
    before = {name: env_file(ai / f"{name}.env") for name in ("openclaw", "safety-wrapper", "secrets-proxy")}
    SecretStore(store, before["safety-wrapper"]["LETSBE_SW_SECRETS_KEY"]).put(
        "ghost_admin_token", GHOST_ADMIN_TOKEN, ["ghost"]
    )
    wrapper = f"http://{vps.address}:8200/api/v1/tools"
    world.llm.reply = "ok"

    async with httpx.AsyncClient(timeout=10) as client:

        async def tools_status(token: str) -> int:
            try:
                return (await client.get(wrapper, headers={"Authorization": f"Bearer {token}"})).status_code
            except httpx.TransportError:
                return 0  # being recreated

        # --- tools token: OpenClaw and the Safety Wrapper get the new one; the Secrets Proxy is not touched.
        old_tools = before["safety-wrapper"]["LETSBE_SW_TOOLS_TOKEN"]
        assert await tools_status(old_tools) == 200
        proxy_pid = vps.agents["secrets-proxy"].pid
        command = await rotate_key(plane, tenant_id, "tools-token")
        assert command["status"] == "SUCCEEDED" and command["agent"] == "provisioner", command
        assert command["result"] == {"credential": "tools-token", "recreated": ["openclaw", "safety-wrapper"]}
        new_tools = env_file(ai / "safety-wrapper.env")["LETSBE_SW_TOOLS_TOKEN"]
        assert new_tools != old_tools and env_file(ai / "openclaw.env")["LETSBE_TOOLS_TOKEN"] == new_tools
        await answers(lambda: _is(tools_status(new_tools), 200), "the wrapper with the new tools token")
        assert await tools_status(old_tools) == 401
        assert env_file(ai / "secrets-proxy.env") == before["secrets-proxy"]
        assert vps.agents["secrets-proxy"].pid == proxy_pid  # exactly the affected containers were recreated

        # --- sentinel key: OpenClaw and the Secrets Proxy; the old sentinel is refused.
        old_sentinel = before["secrets-proxy"]["LETSBE_SP_SENTINEL_KEY"]
        wrapper_pid = vps.agents["safety-wrapper"].pid
        command = await rotate_key(plane, tenant_id, "sentinel-key")
        assert command["result"]["recreated"] == ["openclaw", "secrets-proxy"], command
        new_sentinel = env_file(ai / "secrets-proxy.env")["LETSBE_SP_SENTINEL_KEY"]
        assert new_sentinel != old_sentinel and env_file(ai / "openclaw.env")["LETSBE_SENTINEL_KEY"] == new_sentinel

        async def model_answers() -> bool:
            try:
                return await asyncio.to_thread(model_call, vps.address, new_sentinel) == "ok"
            except openai.APIConnectionError:
                return False

        await answers(model_answers, "the proxy with the new sentinel")
        with pytest.raises(openai.AuthenticationError):
            await asyncio.to_thread(model_call, vps.address, old_sentinel)
        assert vps.agents["safety-wrapper"].pid == wrapper_pid
        assert await tools_status(new_tools) == 200

        # --- secrets key: both agents; the store is re-encrypted under the new key with every secret in it.
        old_key = before["safety-wrapper"]["LETSBE_SW_SECRETS_KEY"]
        command = await rotate_key(plane, tenant_id, "secrets-key")
        assert command["result"]["recreated"] == ["safety-wrapper", "secrets-proxy"], command
        wrapper_env, proxy_env = env_file(ai / "safety-wrapper.env"), env_file(ai / "secrets-proxy.env")
        new_key = wrapper_env["LETSBE_SW_SECRETS_KEY"]
        assert new_key != old_key and proxy_env["LETSBE_SP_SECRETS_KEY"] == new_key
        assert "LETSBE_SW_SECRETS_PREVIOUS_KEY" not in wrapper_env
        assert SecretStore(store, new_key).get("ghost_admin_token").value == GHOST_ADMIN_TOKEN
        with pytest.raises(ValueError, match="cannot decrypt"):
            SecretStore(store, old_key)
        # The recreated proxy reads the store with the new key: the secret is still kept from the model.
        await answers(model_answers, "the proxy with the new secrets key")
        assert GHOST_ADMIN_TOKEN not in world.llm.requests[-1]["raw"].decode()
        await answers(lambda: _is(tools_status(new_tools), 200), "the wrapper with the new secrets key")

        # The tenant's history: three rotations, each asked by the operator and run by the provisioner; no value.
        r = await client.get(f"{plane.hub}/api/v1/admin/tenants/{tenant_id}/commands", headers=plane.headers)
        rotations = [c for c in r.json()["items"] if c["type"] == "rotate-credential"]
        assert sorted(c["params"]["credential"] for c in rotations) == ["secrets-key", "sentinel-key", "tools-token"]
        assert {(c["created_by"], c["status"]) for c in rotations} == {("token:bootstrap-admin", "SUCCEEDED")}
        history = json.dumps([r.json(), command])
        for value in (old_tools, new_tools, old_sentinel, new_sentinel, old_key, new_key):
            assert value not in history
    logs = "".join(p.logs() for p in plane.procs.values())
    logs += "".join(vps.log_path(a).read_text() for a in ("safety-wrapper", "secrets-proxy"))
    for value in (new_tools, new_sentinel, new_key, old_key):
        assert value not in logs


async def _is(awaitable, expected) -> bool:
    return await awaitable == expected
