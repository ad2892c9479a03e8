"""The rendered AI stack against the agents' own settings classes, for every tier with every tool that fits it.
(The provisioner renders, the agents read: a test of both, so it lives here and not in either service's tests.)

Each agent service in /opt/letsbe/ai/docker-compose.yml gets only variables its settings class declares; each mount
is a path the agent reads by a setting; and what the agent reads through a mount is where the tenant's writer
(the backup script, step 10, the Docker daemon, the other agent) puts it, on the host.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import signal
import subprocess
from pathlib import PurePosixPath

import pytest
import yaml

from letsbe_agent import backups
from letsbe_agent.settings import AgentSettings, unknown_variables
from letsbe_contracts import LETSBE_OVERHEAD_MB, Tier
from letsbe_fakes.ssh_target import SshTarget
from letsbe_platform.testing import eventually
from letsbe_provisioner.rendering.plan import AI_DIR, Plan, agent_dir
from letsbe_safety_wrapper.config import SafetyWrapperSettings
from letsbe_secrets_proxy.config import SecretsProxySettings
from provisioner_testing import CATALOG, LLM_KEY, TOKENS, plan_for, shell_env, write_step

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


def test_each_ai_container_gets_exactly_the_keys_it_uses_and_the_agents_read_them(monkeypatch) -> None:
    from cryptography.fernet import Fernet

    plan = plan_for(("ghost",))
    files = {f.path: f for f in plan.step_files(10, TOKENS, LLM_KEY)}
    env = {
        name: dict(line.split("=", 1) for line in files[f"/opt/letsbe/ai/{name}.env"].content.splitlines()
                   if line and not line.startswith("#"))
        for name in ("openclaw", "safety-wrapper", "secrets-proxy")
    }  # fmt: skip
    assert all(files[f"/opt/letsbe/ai/{name}.env"].mode == "0600" for name in env)
    s = plan.secrets
    holders = {
        key: {name for name, values in env.items() if s[key] in values.values()}
        for key in ("ai.openclaw_gateway_token", "ai.tools_token", "ai.sentinel_key", "ai.secrets_key")
    }
    assert holders == {
        # OpenClaw checks it; the Safety Wrapper's chat relay presents it to reach OpenClaw's chat API.
        "ai.openclaw_gateway_token": {"openclaw", "safety-wrapper"},
        "ai.tools_token": {"openclaw", "safety-wrapper"},  # OpenClaw presents it, the Safety Wrapper checks it
        "ai.sentinel_key": {"openclaw", "secrets-proxy"},
        "ai.secrets_key": {"safety-wrapper", "secrets-proxy"},  # the tenant secret store both agents read
    }
    Fernet(s["ai.secrets_key"].encode())  # a usable key for the store
    assert {name for name, values in env.items() if LLM_KEY in values.values()} == {"secrets-proxy"}
    # ...which it presents to the hub's relay, its upstream (compose environment).
    compose = yaml.safe_load(files["/opt/letsbe/ai/docker-compose.yml"].content)
    relay = compose["services"]["secrets-proxy"]["environment"]["LETSBE_SP_UPSTREAM_BASE_URL"]
    assert relay == "https://hub.letsbe.test/api/v1/llm/v1"

    # The agents' own settings pick the values up from their env files (as compose's env_file passes them).
    for name, settings_class in (("safety-wrapper", SafetyWrapperSettings), ("secrets-proxy", SecretsProxySettings)):
        with monkeypatch.context() as m:
            for key, value in env[name].items():
                m.setenv(key, value)
            settings = settings_class(log_json=False)
            assert settings.secrets_key.get_secret_value() == s["ai.secrets_key"]
            if name == "safety-wrapper":
                assert settings.tools_token.get_secret_value() == s["ai.tools_token"]
                assert settings.tool_urls == {"ghost": "http://letsbe-ghost:2368"}
            else:
                assert settings.sentinel_key.get_secret_value() == s["ai.sentinel_key"]
                # The hub's relay key for this tenant: the provider's own key stays on the hub.
                assert settings.upstream_api_key.get_secret_value() == LLM_KEY


async def test_each_agent_sees_the_nightly_backups_lock_while_it_runs_and_reads_its_status(
    target: SshTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = plan_for(("nextcloud",), root=str(target.root))
    for n in (8, 9):
        write_step(target, plan, n)
    rendered = {f.path: f for f in plan.step_files(10, TOKENS)}
    compose = yaml.safe_load(rendered["/opt/letsbe/ai/docker-compose.yml"].content)
    seen = []  # (status file, lock file) on this "server", as each agent's settings and mounts resolve them
    for agent, cls in SETTINGS.items():
        svc = compose["services"][agent]
        settings = settings_from(cls, {k: str(v) for k, v in svc["environment"].items()}, monkeypatch)
        status, lock = (on_host(p, mounts(svc)) for p in (settings.backup_status_path, settings.backup_lock_path))
        assert status is not None and lock is not None, agent
        seen.append((target.path(status), target.path(lock)))
    backup = [str(target.path("/usr/local/sbin/letsbe-backup"))]

    def run_backup() -> subprocess.CompletedProcess[str]:
        return subprocess.run(backup, env=shell_env(target), capture_output=True, text=True, check=False)

    target.hang("docker", 60)  # the dump sits in `docker exec`
    run = subprocess.Popen(backup, env=shell_env(target), start_new_session=True)
    try:

        async def held() -> bool:
            return all(backups.running(lock) for _, lock in seen)

        await eventually(held)
        second = await asyncio.to_thread(run_backup)
        assert second.returncode == 1 and "another run holds" in second.stderr, "one run at a time"
    finally:
        os.killpg(run.pid, signal.SIGKILL)  # a run killed mid-dump (and its dump) leaves the lock file behind
        run.wait()

    async def released() -> bool:  # once the killed processes are gone (the kernel drops their flock)
        return not any(backups.running(lock) for _, lock in seen)

    await eventually(released)
    assert all(lock.exists() for _, lock in seen), "the dead run left its lock file: it is not a lock by itself"

    target.clear("docker")
    target.output("docker", "-- a database dump --\n")
    done = await asyncio.to_thread(run_backup)
    assert done.returncode == 0, done.stderr
    for status, lock in seen:
        report = backups.build_report(status, dt.date.today())
        assert report.problem is None and report.status is not None
        assert report.status.databases["nextcloud"].status == "success"
        assert not backups.running(lock)
