"""The rendered AI stack against the agents' own settings classes, for every tier with every tool that fits it.

Each agent service in /opt/letsbe/ai/docker-compose.yml gets only variables its settings class declares; each mount
is a path the agent reads by a setting; and what the agent reads through a mount is where the tenant's writer
(the backup script, step 10, the Docker daemon, the other agent) puts it, on the host.
"""

from __future__ import annotations

import os
import re
from pathlib import PurePosixPath

import pytest
import yaml

from letsbe_agent.settings import AgentSettings, unknown_variables
from letsbe_contracts import LETSBE_OVERHEAD_MB, Tier
from letsbe_provisioner.rendering.plan import AI_DIR, Plan, agent_dir
from letsbe_safety_wrapper.config import SafetyWrapperSettings
from letsbe_secrets_proxy.config import SecretsProxySettings

from .test_render import CATALOG, TOKENS, plan_for

SETTINGS: dict[str, type[AgentSettings]] = {
    "safety-wrapper": SafetyWrapperSettings,
    "secrets-proxy": SecretsProxySettings,
}
DOCKER_SOCKET = "/var/run/docker.sock"  # where dockerd listens on the host


def tools_that_fit(tier: Tier) -> tuple[str, ...]:
    """Every selectable tool, in catalog order, while the tier's RAM and disk still hold them."""
    spec = CATALOG.tier(tier)
    ram, disk, chosen = LETSBE_OVERHEAD_MB, 0, []
    for tool in CATALOG.selectable:
        if ram + tool.stack_ram_mb <= spec.ram_mb and disk + tool.disk_gb <= spec.disk_gb:
            ram, disk = ram + tool.stack_ram_mb, disk + tool.disk_gb
            chosen.append(tool.name)
    return tuple(chosen)


def settings_from(cls: type[AgentSettings], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> AgentSettings:
    """The agent's settings as it builds them in its container: from exactly this environment."""
    for name in list(os.environ):
        if name.upper().startswith("LETSBE_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return cls()


def mounts(service: dict) -> list[tuple[str, str]]:
    out = []
    for volume in service.get("volumes", []):
        host, container = volume.split(":")[:2]
        assert host.startswith("/"), f"agents get host paths, not named volumes: {volume}"
        out.append((host, container))
    return out


def on_host(path: object, service_mounts: list[tuple[str, str]]) -> str | None:
    """Where the agent's ``path`` is on the host (through the mount that holds it), or None if not mounted."""
    p = PurePosixPath(str(path))
    for host, container in service_mounts:
        if p == PurePosixPath(container) or PurePosixPath(container) in p.parents:
            return str(PurePosixPath(host) / p.relative_to(container))
    return None


def written_by_backup_script(plan: Plan, variable: str) -> str:
    script = {f.path: f for f in plan.step_files(8)}["/usr/local/sbin/letsbe-backup"].content
    found = re.search(rf'^{variable}="\$ROOT([^"]+)"$', script, re.M)
    assert found, f"the backup script sets no {variable}"
    return found.group(1)


@pytest.mark.parametrize("tier", list(Tier))
def test_every_variable_and_mount_of_the_agents_is_one_they_read(tier: Tier, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = plan_for(tools_that_fit(tier), tier=tier)
    files = {f.path: f for f in plan.files(TOKENS)}
    compose = yaml.safe_load(files[f"{AI_DIR}/docker-compose.yml"].content)
    status_file = written_by_backup_script(plan, "status_file")
    lock_file = written_by_backup_script(plan, "lock_file")
    shared: dict[tuple[str, str], str | None] = {}
    for agent, cls in SETTINGS.items():
        svc = compose["services"][agent]
        env = {name: str(value) for name, value in svc.get("environment", {}).items()}
        for env_file in svc.get("env_file", []):  # what the container gets from its 0600 env files, too
            lines = files[f"{AI_DIR}/{env_file}"].content.splitlines()
            env |= dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
        assert unknown_variables(cls, env) == [], f"{agent}: variables its settings do not declare"
        settings = settings_from(cls, env, monkeypatch)
        svc_mounts = mounts(svc)
        read = {k: v for k, v in settings.model_dump().items() if isinstance(v, PurePosixPath)}
        for host, container in svc_mounts:
            assert any(on_host(p, [(host, container)]) for p in read.values()), f"{agent}: {container} is read by none"
        # and every path it reads or writes is on the host: not in the container's layer, lost at its next update
        unmounted = sorted(k for k, p in read.items() if on_host(p, svc_mounts) is None)
        assert not unmounted, f"{agent}: not mounted: {unmounted}"

        # what it reads is where the writer writes, on the host
        assert on_host(settings.state_dir, svc_mounts) == agent_dir(agent)
        token = f"{agent_dir(agent)}/registration-token"
        assert token in files, "step 10 leaves the registration token"
        assert on_host(settings.registration_token_file, svc_mounts) == token
        assert on_host(settings.backup_status_path, svc_mounts) == status_file, f"{agent}: backup-status.json"
        assert on_host(settings.backup_lock_path, svc_mounts) == lock_file, f"{agent}: backup lock"
        assert on_host(settings.docker_socket, svc_mounts) == DOCKER_SOCKET, f"{agent}: Docker socket"
        shared["ledger", agent] = on_host(settings.usage_ledger_path, svc_mounts)
        shared["secrets", agent] = on_host(settings.secrets_path, svc_mounts)
        # the socket is root:docker 0660 on the host; the agents run as 1001 and get the socket's group
        assert svc["user"] == "1001:1001"
        assert svc.get("group_add") == ["${DOCKER_GID:?step 10 writes DOCKER_GID into .env}"], agent
        # who does what: the Safety Wrapper reports backups and usage, the Secrets Proxy records usage
        assert settings.report_backups == settings.report_usage == (agent == "safety-wrapper"), agent
    for what in ("ledger", "secrets"):  # the proxy records usage, the wrapper reports; the wrapper keeps secrets
        assert shared[what, "safety-wrapper"] == shared[what, "secrets-proxy"], f"two {what} files, not one"
