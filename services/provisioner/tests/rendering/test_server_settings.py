"""The settings for servers that differ from a provider's VPS, and the root-to-provisioning-user hand-over.

Each setting changes only what it names and says so in the step's output; the defaults render what a real server
gets. (The test VPS suite, tests/vps, runs these for real; these checks need no server.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path

import asyncssh

from letsbe_contracts import Provider, ServerTarget
from letsbe_provisioner.config import ProvisionerSettings
from letsbe_provisioner.jobs import ssh
from letsbe_provisioner.jobs.service import plan_settings
from letsbe_provisioner.rendering.plan import COMPOSE_SHIM, Plan
from letsbe_provisioner.steps import STEPS
from provisioner_testing import TOKENS, plan_for

KEY = asyncssh.generate_private_key("ssh-ed25519")
TEST_VPS = {
    "preflight_min_cpus": 1, "vm_sysctls": False, "swap_mb": 0, "docker_source": "debian",
    "registry_mirror": "http://10.213.0.1:5000", "image_registry": "10.213.0.1:5000/letsbe",
    "insecure_registries": ("10.213.0.1:5000",), "control_plane_ips": ("10.213.0.1", "2001:db8::1"),
    "apps_setup": False,
}  # fmt: skip


def server(user: str) -> ServerTarget:
    return ServerTarget(
        server_id=uuid.uuid4(), provider=Provider.HETZNER, provider_ref="1", ipv4="192.0.2.10", ssh_user=user,
        host_key_fingerprint="SHA256:" + "A" * 43,
    )  # fmt: skip


def plan_with(user: str = "root", **settings: object) -> Plan:
    plan = plan_for(("uptime_kuma",))
    values = plan_settings(ProvisionerSettings(**settings), server(user), KEY)  # type: ignore[arg-type]
    plan.settings = replace(plan.settings, **values)
    return plan


def file(plan: Plan, step: int, path: str) -> str:
    return next(f.content for f in plan.step_files(step, TOKENS) if f.path == path)


def test_a_server_handed_over_as_root_is_provisioned_as_the_provisioning_user_after_step_3() -> None:
    root = server("root")
    assert [ssh.step_target(root, s.number, "letsbe").ssh_user for s in STEPS] == ["root"] * 3 + ["letsbe"] * 7
    plan = plan_with("root")
    assert plan.settings.ssh_user == "letsbe"
    script = plan.step_script(3)
    assert KEY.export_public_key().decode().strip() in script  # our key, for letsbe, before root is refused
    assert script.rstrip().endswith("systemctl restart ssh"), "nothing after the hardening needs a root session"
    assert "PermitRootLogin no" in file(plan, 3, "/etc/ssh/sshd_config.d/10-letsbe.conf")


def test_a_server_handed_over_with_its_own_user_keeps_it_for_every_step() -> None:
    cloud_init = server("letsbe")
    assert {ssh.step_target(cloud_init, s.number, "letsbe").ssh_user for s in STEPS} == {"letsbe"}
    plan = plan_with("letsbe")
    assert plan.settings.ssh_user_key is None and "authorized_keys" not in plan.step_script(3)


def test_defaults_render_what_a_provider_vps_gets() -> None:
    plan = plan_with()
    steps = {s.number: plan.step_script(s.number, TOKENS) for s in STEPS}
    assert "(setting " not in "".join(steps.values())
    assert 'sysctl -p "$ROOT/etc/sysctl.d/60-letsbe.conf"' in steps[2] and "fallocate -l 2048M" in steps[2]
    assert "download.docker.com" in steps[5] and COMPOSE_SHIM not in steps[5]
    assert json.loads(file(plan, 5, "/etc/docker/daemon.json")) == {
        "log-driver": "json-file", "log-opts": {"max-size": "10m", "max-file": "3"}, "live-restore": True,
    }  # fmt: skip
    assert 'image: "code.letsbe.solutions/letsbe/safety-wrapper:latest"' in file(
        plan, 10, "/opt/letsbe/ai/docker-compose.yml"
    )
    assert "ignoreip = 127.0.0.1/8 ::1\n" in file(plan, 3, "/etc/fail2ban/jail.d/letsbe.local")


def test_each_test_vps_setting_changes_what_it_names_and_says_so() -> None:
    plan = plan_with(**TEST_VPS)
    steps = {s.number: plan.step_script(s.number, TOKENS) for s in STEPS}
    assert "(setting preflight_min_cpus)" in steps[1] and '[ "$cpus" -ge 1 ]' in steps[1]
    assert "sysctl -p" not in steps[2] and "(setting vm_sysctls=false" in steps[2]
    assert "fallocate" not in steps[2] and "skipped: swap file (setting swap_mb=0)" in steps[2]
    assert "download.docker.com" not in steps[5] and "docker.io docker-compose" in steps[5]
    for name in ("docker_source=debian", "registry_mirror", "image_registry"):
        assert f"(setting {name}" in steps[5]
    assert json.loads(file(plan, 5, "/etc/docker/daemon.json"))["registry-mirrors"] == ["http://10.213.0.1:5000"]
    assert json.loads(file(plan, 5, "/etc/docker/daemon.json"))["insecure-registries"] == ["10.213.0.1:5000"]
    assert 'image: "10.213.0.1:5000/letsbe/openclaw:latest"' in file(plan, 10, "/opt/letsbe/ai/docker-compose.yml")
    assert "ignoreip = 127.0.0.1/8 ::1 10.213.0.1 2001:db8::1\n" in file(plan, 3, "/etc/fail2ban/jail.d/letsbe.local")
    assert "apps_setup is off" in steps[9] and "node -e" not in steps[9]
    assert "apps_setup is off" in steps[10] and "tools.secrets set" not in steps[10]


def test_scripts_rendered_with_every_setting_pass_shellcheck(tmp_path: Path) -> None:
    shellcheck = Path(sys.executable).parent / "shellcheck"
    paths = []
    for name, plan in (("root", plan_with(**TEST_VPS)), ("default", plan_with("letsbe"))):
        for s in STEPS:
            paths.append(tmp_path / f"{name}-{s.number:02d}.sh")
            paths[-1].write_text(plan.step_script(s.number, TOKENS))
    paths.append(tmp_path / "compose-shim")
    paths[-1].write_text(file(plan_with(**TEST_VPS), 5, COMPOSE_SHIM))
    result = subprocess.run([str(shellcheck), "-S", "warning", *map(str, paths)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_the_compose_shim_drops_the_top_level_name_compose_v1_rejects(tmp_path: Path) -> None:
    """`docker compose --project-directory D -p P up -d` on Debian's docker-compose v1, which rejects `name:`."""
    shim = tmp_path / "docker-compose-plugin"
    shim.write_text(file(plan_with(**TEST_VPS), 5, COMPOSE_SHIM))
    shim.chmod(0o755)
    fake = tmp_path / "bin" / "docker-compose"  # records what v1 would be given: its arguments and the file on stdin
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "args: $* cwd: $(pwd)"\ncat\n')
    fake.chmod(0o755)
    project = tmp_path / "nginx"
    project.mkdir()
    (project / "docker-compose.yml").write_text("name: letsbe-nginx\nservices:\n  nginx:\n    image: nginx\n")
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin"}
    meta = subprocess.run([str(shim), "docker-cli-plugin-metadata"], capture_output=True, text=True, env=env)
    assert json.loads(meta.stdout)["SchemaVersion"] == "0.1.0"
    out = subprocess.run(
        [str(shim), "compose", "--project-directory", str(project), "-p", "letsbe-nginx", "up", "-d"],
        capture_output=True, text=True, env=env, check=True,
    ).stdout  # fmt: skip
    assert out.splitlines()[0] == f"args: -f - --project-directory {project} -p letsbe-nginx up -d cwd: {project}"
    assert "name:" not in out and "services:\n  nginx:" in out
