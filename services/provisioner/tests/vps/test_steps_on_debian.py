"""The ten provisioning steps, rendered by the provisioner, run over SSH on a real Debian 12 system (the test VPS).

Everything is real: apt (through the mirror-only proxy), useradd, sshd hardening and reload, fail2ban, ufw,
Docker, certbot. The test VPS differs from a provider's VPS in named settings only (``TEST_VPS_SETTINGS``), and
each step says in its output when one of them made it skip something; the table in the terminal summary lists it.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import asyncssh
import pytest

from letsbe_contracts import AutomationMode, OrderSpec, Provider, Region, ServerTarget, Tier
from letsbe_provisioner.config import ProvisionerSettings
from letsbe_provisioner.jobs import ssh
from letsbe_provisioner.jobs.service import plan_settings
from letsbe_provisioner.rendering.plan import AGENTS, Plan, Settings, generate_secrets
from letsbe_provisioner.steps import STEPS
from letsbe_testvps import images
from letsbe_testvps.vps import Vps

pytestmark = [pytest.mark.vps, pytest.mark.timeout(1200)]

# How the test VPS differs from a provider's VPS. The provisioner takes these from LETSBE_PROVISIONER_<NAME>.
TEST_VPS_SETTINGS = {
    "preflight_min_cpus": 1,  # the host's 2 CPUs are what nproc shows, whatever the tier
    "vm_sysctls": False,  # vm.* is host-wide, read-only inside a container
    "swap_mb": 0,  # no swapon inside a container
    "docker_source": "debian",  # download.docker.com is unreachable here; Debian's docker.io is not
}
TOOLS: tuple[str, ...] = ()  # step 9 with no tool stacks: see docs/test-vps.md for what image stand-ins allow


@dataclass
class StepResult:
    number: int
    name: str
    status: str = "not run"
    seconds: float = 0.0
    lines: list[str] = field(default_factory=list)

    @property
    def notes(self) -> list[str]:
        return [line.split(": ", 1)[1] for line in self.lines if "(setting " in line]


def table(results: list[StepResult], stand_ins: list[str]) -> str:
    out = [f"{'step':<16} {'status':<10} {'seconds':>7}  skipped / settings used"]
    for r in results:
        notes = r.notes or ["-"]
        out.append(f"{r.number:>2} {r.name:<13} {r.status:<10} {r.seconds:>7.1f}  {notes[0]}")
        out += [f"{'':<36}  {n}" for n in notes[1:]]
    out.append("locally built image stand-ins: " + (", ".join(stand_ins) or "none"))
    return "\n".join(out)


async def test_the_ten_steps_run_for_real_on_debian_12(
    test_vps: Vps, testvps_key: asyncssh.SSHKey, testvps_report: list[tuple[str, str]]
) -> None:
    settings = ProvisionerSettings(control_plane_ips=(test_vps.host_ip,), **TEST_VPS_SETTINGS)
    server = ServerTarget(
        server_id=uuid.uuid4(),
        provider=Provider.HETZNER,
        provider_ref="testvps",
        ipv4=test_vps.ip,
        ssh_user="root",  # a provider's fresh Debian 12 image: only root, with our key
        host_key_fingerprint=test_vps.host_key_fingerprint,
    )
    order = OrderSpec(
        order_id=uuid.uuid4(),
        domain="tenant.example.com",
        tier=Tier.LITE,
        region=Region.EU,
        tools=TOOLS,
        automation_mode=AutomationMode.AUTO,
        customer_email="owner@example.com",
    )
    plan = Plan(
        order,
        Settings(hub_url=f"http://{test_vps.host_ip}:3847", **plan_settings(settings, server, testvps_key)),
        generate_secrets(TOOLS),
    )
    tokens = {agent: f"rt_{agent}_testvps" for agent in AGENTS}
    results = [StepResult(s.number, s.name) for s in STEPS]
    stand_ins: list[str] = []
    conn: asyncssh.SSHClientConnection | None = None
    user = None
    try:
        for step, result in zip(STEPS, results, strict=True):
            if step.number == 6:  # before the first container: the images this network cannot pull
                stand_ins = images.preload(test_vps, plan.step_files(6) + plan.step_files(9) + plan.step_files(10))
            target = ssh.step_target(server, step.number, plan.settings.ssh_user)
            if conn is not None and user != target.ssh_user:
                conn.close()
                conn = None
            if conn is None:
                conn = await ssh.connect(target, testvps_key, timeout=settings.ssh_connect_timeout_seconds)
                user = target.ssh_user

            async def sink(stream: str, line: str, r: StepResult = result) -> None:
                r.lines.append(f"{stream}: {line}")

            started = time.monotonic()
            result.status = "error"
            code = await ssh.run_script(
                conn, plan.step_script(step.number, tokens), root="", user=user, on_line=sink, timeout=600
            )
            result.seconds = time.monotonic() - started
            result.status = "ok" if code == 0 else f"exit {code}"
            if code != 0:
                break
    finally:
        if conn is not None:
            conn.close()
        testvps_report.append(("provisioning steps on the Debian 12 test VPS", table(results, stand_ins)))
        import json; open("/tmp/steplines.json","w").write(json.dumps([r.lines for r in results]))
    failed = [r for r in results if r.status != "ok"]
    assert not failed, f"step {failed[0].number} {failed[0].name}: {failed[0].status}\n" + "\n".join(
        failed[0].lines[-40:]
    )

    # What the steps left behind is what a real server has.
    with pytest.raises(ssh.ConnectionFailed, match="refused"):
        await ssh.connect(server, testvps_key, timeout=10)  # root login refused after step 3
    assert "Status: active" in test_vps.nsenter("ufw", "status").stdout
    jail = test_vps.nsenter("fail2ban-client", "get", "sshd", "ignoreip").stdout
    assert test_vps.host_ip in jail
    assert test_vps.nsenter("systemctl", "is-active", "docker", "fail2ban", "cron").stdout.split() == ["active"] * 3
