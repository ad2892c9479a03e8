"""The sandbox runs a tenant's agents from the files the provisioner rendered, mapped onto that VPS's root."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml

from letsbe_contracts import AutomationMode, OrderSpec, Region, Tier
from letsbe_provisioner.rendering.plan import AI_DIR, Plan, Settings, generate_secrets
from letsbe_sandbox.memlimit import spawn
from letsbe_sandbox.vps import AI_COMPOSE, RenderedAgents, TenantError, mem_limit_mb

ADDRESS = "127.0.0.7"


def render(root: Path, **settings: object) -> Path:
    """Step 10's files, written where the provisioner puts them on the VPS at ``root``."""
    order = OrderSpec(
        order_id=uuid.uuid4(),
        domain="shop.example.com",
        tier=Tier.LITE,
        region=Region.EU,
        tools=("ghost",),
        automation_mode=AutomationMode.AUTO,
        customer_email="owner@example.com",
    )
    s = Settings(hub_url="http://127.0.0.1:3847", root=str(root), **settings)  # type: ignore[arg-type]
    plan = Plan(order, s, generate_secrets(order.tools))
    for f in plan.step_files(10, {"safety-wrapper": "t1"}, "lbl_relay-key-for-this-tenant"):
        p = root / f.path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f.content)
    return root / AI_COMPOSE.lstrip("/")


def edit(compose: Path, service: str, **changes: object) -> None:
    doc = yaml.safe_load(compose.read_text())
    doc["services"][service].update(changes)
    compose.write_text(yaml.safe_dump(doc))


def test_the_agents_get_the_rendered_environment_with_paths_on_their_own_vps(tmp_path: Path) -> None:
    root = tmp_path / ADDRESS
    render(root, agent_heartbeat_seconds=5, agent_backoff_max_seconds=2)
    specs = {s.service: s for s in RenderedAgents(root, ADDRESS).specs()}
    assert set(specs) == {"safety-wrapper", "secrets-proxy", "openclaw"}
    sw, sp, claw = specs["safety-wrapper"], specs["secrets-proxy"], specs["openclaw"]
    assert sw.argv[1:] == ("-m", "letsbe_safety_wrapper") and sp.argv[1:] == ("-m", "letsbe_secrets_proxy")
    # The provisioner's values, as rendered: heartbeat and backoff are its settings, not the sandbox's.
    assert sw.env["LETSBE_SW_HEARTBEAT_INTERVAL_SECONDS"] == "5" and sp.env["LETSBE_SP_BACKOFF_MAX_SECONDS"] == "2"
    assert sw.env["LETSBE_SW_HUB_URL"] == "http://127.0.0.1:3847"
    # Mounted container paths name the mapped host paths; the published port is on the VPS's own address.
    assert sw.env["LETSBE_SW_STATE_DIR"] == str(root / "var/lib/letsbe/safety-wrapper")
    assert sw.env["LETSBE_SW_REGISTRATION_TOKEN_FILE"] == str(root / "var/lib/letsbe/safety-wrapper/registration-token")
    assert (sw.env["LETSBE_SW_HOST"], sw.env["LETSBE_SW_PORT"], sw.port) == (ADDRESS, "8200", 8200)
    assert (sp.env["LETSBE_SP_HOST"], sp.port) == (ADDRESS, 8100)
    # A path the agent takes by default lies under a volume or in the container's own layer: never this machine's.
    assert sw.env["LETSBE_SW_DOCKER_SOCKET"] == str(root / "var/run/docker.sock")  # mounted
    assert sp.env["LETSBE_SP_DOCKER_SOCKET"] == str(root / "var/run/docker.sock")  # mounted: it updates the wrapper
    for spec in specs.values():
        assert all(v.startswith(str(root) + "/") for v in spec.env.values() if v.startswith("/")), spec.env
    # Every key is the provisioner's; the sandbox adds only its marker.
    assert sw.env["LETSBE_SW_TOOLS_TOKEN"] and sp.env["LETSBE_SP_SENTINEL_KEY"] and sp.env["LETSBE_SP_SECRETS_KEY"]
    assert sp.env["LETSBE_SP_UPSTREAM_API_KEY"] == "lbl_relay-key-for-this-tenant"
    assert sp.env["LETSBE_SP_UPSTREAM_BASE_URL"] == "http://127.0.0.1:3847/api/v1/llm/v1"
    assert sw.env["LETSBE_SANDBOX"] == sp.env["LETSBE_SANDBOX"] == "1"
    assert (sw.mem_limit_mb, sp.mem_limit_mb) == (128, 64)  # from the service's mem_limit
    # OpenClaw's gateway is a stand-in on the rendered gateway port, with the rendered token; the Safety Wrapper's
    # chat relay finds it under its container name, which resolves to the VPS's address.
    assert claw.argv[1:] == ("-m", "letsbe_sandbox.openclaw") and claw.port == 18789
    assert (claw.env["LETSBE_SANDBOX_OPENCLAW_HOST"], claw.env["LETSBE_SANDBOX_OPENCLAW_PORT"]) == (ADDRESS, "18789")
    assert sw.env["LETSBE_SW_CHAT_URL"] == f"http://{ADDRESS}:18789/v1/chat/completions"
    assert sw.env["LETSBE_SW_CHAT_TOKEN"] == claw.env["OPENCLAW_GATEWAY_TOKEN"]


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"environment": {"LETSBE_SW_TOOLS_DIR": "/srv/tools"}}, "LETSBE_SW_TOOLS_DIR=/srv/tools names a path"),
        ({"ports": ["127.0.0.1:9200:8200"]}, "publishes a port only as ip:port:same-port"),
        ({"env_file": ["missing.env"]}, "missing.env does not exist"),
        ({"mem_limit": "lots"}, "mem_limit 'lots' is not a size"),
    ],
)
def test_a_rendered_tenant_that_does_not_fit_fails_with_the_reason(
    tmp_path: Path, changes: dict[str, object], error: str
) -> None:
    compose = render(tmp_path)
    edit(compose, "safety-wrapper", **changes)
    with pytest.raises(TenantError, match=error):
        RenderedAgents(tmp_path, ADDRESS).specs()


def test_no_compose_file_no_agents(tmp_path: Path) -> None:
    with pytest.raises(TenantError, match=f"{AI_DIR}/docker-compose.yml was not rendered"):
        RenderedAgents(tmp_path, ADDRESS).specs()


@pytest.mark.parametrize(("value", "mb"), [("128m", 128), ("1g", 1024), ("64M", 64), (268435456, 256), (None, None)])
def test_compose_memory_limits(value: object, mb: int | None) -> None:
    assert mem_limit_mb(value) == mb


def test_spawn_runs_with_exactly_the_given_environment(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "agent.log"
    proc = spawn(["/usr/bin/env"], env={"ONLY": "this"}, mem_limit_mb=64, log_path=log)
    assert proc.wait(10) == 0
    # The log also carries the sandbox's own lines about the limit (prefixed); the environment is exactly the one given.
    printed = [line for line in log.read_text().splitlines() if not line.startswith("[sandbox] ")]
    assert printed == ["ONLY=this"]
