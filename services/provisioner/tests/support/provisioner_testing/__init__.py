"""The provisioner's test support: a rendering plan for an order, without a server (imported by its tests and by
the cross-service tests under tests/; found through ``pythonpath`` in the root pyproject.toml)."""

from __future__ import annotations

import os
import uuid

from letsbe_contracts import AutomationMode, OrderSpec, Region, Tier, load_catalog
from letsbe_fakes.ssh_target import SshTarget
from letsbe_provisioner.rendering.plan import AGENTS, NginxPaths, Plan, Settings, generate_secrets

CATALOG = load_catalog()
ALL_TOOLS = tuple(t.name for t in CATALOG.selectable)
TOKENS = {agent: f"rt_{agent}_0123456789abcdef" for agent in AGENTS}
LLM_KEY = "lbl_tenant-relay-key-0123456789abcdef"


def plan_for(
    tools: tuple[str, ...] = ALL_TOOLS,
    *,
    nginx: NginxPaths | None = None,
    root: str = "",
    tier: Tier = Tier.ENTERPRISE,
    preflight_min_cpus: int | None = None,
) -> Plan:
    order = OrderSpec(
        order_id=uuid.uuid4(),
        domain="example.com",
        tier=tier,
        region=Region.EU,
        tools=tools,
        automation_mode=AutomationMode.AUTO,
        customer_email="owner@example.com",
    )
    return Plan(
        order,
        Settings(
            hub_url="https://hub.letsbe.test",
            root=root,
            nginx=nginx or NginxPaths(),
            preflight_min_cpus=preflight_min_cpus,
        ),
        generate_secrets(tools),
    )


def shell_env(target: SshTarget, *, standins: bool = True) -> dict[str, str]:
    """The environment to run a rendered script on the target with (its recording stand-ins first on PATH)."""
    path = os.environ["PATH"]
    return {**os.environ, "PATH": f"{target.bin}:{path}" if standins else path, "TMPDIR": str(target.root / "tmp")}


def write_step(target: SshTarget, plan: Plan, number: int) -> None:
    """Step ``number``'s rendered files, written onto the target as the step would."""
    for f in plan.step_files(number, TOKENS):
        p = target.path(f.path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f.content)
        p.chmod(int(f.mode, 8))
