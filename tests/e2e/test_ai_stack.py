"""A provisioned tenant's AI stack serves calls with nothing set by hand. The agents run with exactly the
keys the provisioner rendered on the VPS; a model call goes OpenClaw's way (the official OpenAI client with the
sentinel key → the tenant's Secrets Proxy → the hub's LLM relay with the tenant's own relay key → the provider with
the platform's key, which only the hub holds), is redacted on the way, and is metered by the hub for that tenant;
a tool call goes through the tenant's Safety Wrapper with the rendered tools token. The relay key is then rotated by
the hub's rotate-credential command, and the next call runs on the new key alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest
import pytest_asyncio

from letsbe_platform.bus import Bus
from letsbe_platform.runner import SERVICES
from letsbe_platform.testing import eventually, free_port
from letsbe_safety_wrapper.tools.secrets import SecretStore
from letsbe_sandbox.plane import ControlPlane
from letsbe_sandbox.world import Ports

from .conftest import control_plane

GHOST_ADMIN_TOKEN = "6489f0c1e0d2a3b4:ghost-admin-secret-5f1e9c0d7a2b4e6f8091a2b3c4d5e6f7"


@pytest_asyncio.fixture
async def plane(sandbox_root: Path, service_env: dict[str, str], bus: Bus) -> AsyncIterator[ControlPlane]:
    """The sandbox plane, with a hub that ends a replaced relay key at once (no grace period): after a rotation
    only the new key works, so a call that still succeeds proves the proxy switched."""
    env = {**service_env, "LETSBE_HUB_LLM_KEY_GRACE_SECONDS": "0"}
    cp = control_plane(sandbox_root, Ports(*(free_port() for _ in range(4))), env, bus)
    try:
        await cp.start(*(s.name for s in SERVICES))
        yield cp
    finally:
        cp.stop_all()
        cp.world.stop()


def env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


async def metered(plane, client: httpx.AsyncClient, tenant_id: str, tokens_in: int, requests: int) -> dict:
    """The hub's count for the tenant, once it has the calls made (it records a call as its answer ends)."""

    async def counted() -> dict | None:
        r = await client.get(f"{plane.hub}/api/v1/admin/tenants/{tenant_id}/llm-usage", headers=plane.headers)
        assert r.status_code == 200, r.text
        done = r.json()["requests"] >= requests and r.json()["tokens_in"] >= tokens_in
        return r.json() if done else None

    return await eventually(counted, f"the hub's count of {requests} calls", timeout=60, every=0.2)


@pytest.mark.timeout(150)
async def test_a_provisioned_tenant_serves_a_model_call_and_a_tool_call_with_the_keys_it_was_rendered(plane):
    world = plane.world
    async with httpx.AsyncClient(timeout=30) as client:
        created = await plane.order(client, "ai.example.com", ["ghost"])
        tenant_id = created["id"]  # a tenant's id is its order's
        await plane.pay(client, created["checkout_session_id"])
        await plane.wait_status(client, tenant_id, "FULFILLED")
        await plane.heartbeating(client, tenant_id)

    # The keys, as the provisioner wrote them on this VPS: one 0600 env file per container.
    vps = world.vps_of_order(tenant_id)
    ai = vps.path("/opt/letsbe/ai")
    proxy_env, wrapper_env = env_file(ai / "secrets-proxy.env"), env_file(ai / "safety-wrapper.env")
    sentinel, tools_token = proxy_env["LETSBE_SP_SENTINEL_KEY"], wrapper_env["LETSBE_SW_TOOLS_TOKEN"]
    assert proxy_env["LETSBE_SP_UPSTREAM_API_KEY"].startswith("lbl_")  # the hub's relay key for this tenant
    platform_key = world.material.llm_upstream_key
    for f in ai.iterdir():  # the provider's key is nowhere on the tenant
        if f.is_file():
            assert platform_key not in f.read_text(errors="replace"), f

    # An operator registers Ghost's admin token with the Safety Wrapper (its secret store, its key): from now on
    # the tenant's Secrets Proxy keeps it from the model.
    SecretStore(vps.path("/var/lib/letsbe/secrets/secrets.enc"), wrapper_env["LETSBE_SW_SECRETS_KEY"]).put(
        "ghost_admin_token", GHOST_ADMIN_TOKEN, ["ghost"]
    )

    # A model call, streamed, with the official client and the documented loop (choices[0] of every chunk).
    world.llm.reply, world.llm.usage = "Done, I scheduled the post.", (42, 9)
    before = len(world.llm.requests)

    def model_call() -> str:
        llm = openai.OpenAI(base_url=f"http://{vps.address}:8100/v1", api_key=sentinel, max_retries=0, timeout=30)
        stream = llm.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"Publish the draft. The Ghost key is {GHOST_ADMIN_TOKEN}."}],
            stream=True,
        )
        return "".join(chunk.choices[0].delta.content or "" for chunk in stream)

    assert await asyncio.to_thread(model_call) == "Done, I scheduled the post."
    [upstream] = world.llm.requests[before:]
    assert GHOST_ADMIN_TOKEN not in upstream["raw"].decode()  # masked before it left the tenant
    assert "Publish the draft." in upstream["body"]["messages"][0]["content"]
    assert upstream["headers"]["authorization"] == f"Bearer {platform_key}"  # added by the hub's relay only

    # A wrong sentinel gets nowhere.
    with pytest.raises(openai.AuthenticationError):
        await asyncio.to_thread(
            openai.OpenAI(base_url=f"http://{vps.address}:8100/v1", api_key="sk-guess", max_retries=0)
            .chat.completions.create, model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
        )
    assert len(world.llm.requests) == before + 1

    async with httpx.AsyncClient(timeout=30) as client:
        # A tool call through the Safety Wrapper with the rendered tools token: deleting a post is CRITICAL_RED,
        # so it waits for an operator's approval on the hub.
        wrapper = f"http://{vps.address}:8200/api/v1/tools/execute"
        call = {"tool": "ghost", "action": "posts.delete", "args": {"id": "42"}, "reason": "duplicate post"}
        r = await client.post(wrapper, json=call, headers={"Authorization": "Bearer not-the-token"})
        assert r.status_code == 401, r.text
        r = await client.post(wrapper, json=call, headers={"Authorization": f"Bearer {tools_token}"})
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "pending_approval"
        approvals = await client.get(f"{plane.hub}/api/v1/admin/approvals", params={"tenant_id": tenant_id},
                                     headers=plane.headers)
        assert [a["id"] for a in approvals.json()["items"]] == [r.json()["approval_id"]]

        # The hub metered the model call against this tenant (the usage of the stream's last chunk).
        usage = await metered(plane, client, tenant_id, 42, 1)
        assert (usage["tokens_in"], usage["tokens_out"], usage["requests"]) == (42, 9, 1), usage

        # Rotation: the hub's rotate-credential command for the relay key goes to the Secrets Proxy, which fetches
        # a new key from the hub, keeps it in its state directory and switches to it live (no restart).
        r = await client.post(f"{plane.hub}/api/v1/admin/tenants/{tenant_id}/commands", headers=plane.headers,
                              json={"type": "rotate-credential", "params": {"credential": "llm-key"}})
        assert r.status_code == 201, r.text
        assert r.json()["agent"] == "secrets-proxy"
        command = r.json()["id"]

        async def ended() -> dict | None:
            view = (await client.get(f"{plane.hub}/api/v1/admin/commands/{command}", headers=plane.headers)).json()
            return view if view["status"] in ("SUCCEEDED", "FAILED") else None

        view = await eventually(ended, "the rotate-credential command to end", timeout=60, every=0.2)
        assert view["status"] == "SUCCEEDED", view
        kept = vps.path("/var/lib/letsbe/secrets-proxy/llm-key.json")
        assert kept.stat().st_mode & 0o777 == 0o600
        assert proxy_env["LETSBE_SP_UPSTREAM_API_KEY"] not in kept.read_text()

    world.llm.usage = (5, 1)
    assert await asyncio.to_thread(model_call) == "Done, I scheduled the post."  # the old key has ended
    async with httpx.AsyncClient(timeout=30) as client:
        usage = await metered(plane, client, tenant_id, 47, 2)
        assert (usage["tokens_in"], usage["tokens_out"], usage["requests"]) == (47, 10, 2), usage
        # The rendered (now ended) key no longer works at the relay.
        r = await client.post(f"{plane.hub}/api/v1/llm/v1/chat/completions",
                              json={"model": "gpt-4o-mini", "messages": []},
                              headers={"Authorization": f"Bearer {proxy_env['LETSBE_SP_UPSTREAM_API_KEY']}"})
        assert r.status_code == 401
