"""One sandbox "VPS" per (fake) Hetzner server, and the tenant agents it runs from the files the provisioner rendered.

A VPS is a loopback SSH server on the server's own address 127.B.C.x (all of 127.0.0.0/8 is local on Linux; the /24
is the sandbox's own), at the one SSH port the hub is configured with, over its own root directory, reporting the
CPUs, RAM and disk of the server type that was ordered. It has its own Docker Engine (a fake, on
``/var/run/docker.sock`` of its root).

The sandbox plays dockerd for the AI stack: when step 10 runs ``docker compose … up`` on the VPS, the agents of the
rendered ``/opt/letsbe/ai/docker-compose.yml`` start as local processes, each with exactly the environment of its
compose service (``env_file`` + ``environment``), its volumes mapped onto the VPS root (an environment value that
names a mounted container path is rewritten to the mapped path), its published port bound on the VPS's own address.
OpenClaw has no image the sandbox can run: a stand-in for its gateway's chat API (``letsbe_sandbox.openclaw``) runs
instead, with the rendered ``openclaw.env`` and on the rendered gateway port, so the chat relay gets answers. The
project's container names (``letsbe-openclaw``) resolve to the VPS's address, as Docker's DNS resolves them on the
project's networks. A name or path in the rendered files that does not fit fails the tenant here, as it would fail
on a real server.
"""

from __future__ import annotations

import importlib
import itertools
import json
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import yaml

from letsbe_fakes.docker_engine import DockerEngineFake
from letsbe_fakes.ssh_target import SshTarget
from letsbe_platform.logging import get_logger
from letsbe_sandbox import memlimit
from letsbe_sandbox.openclaw import HOST_VAR, PORT_VAR

log = get_logger(__name__)

AI_COMPOSE = "/opt/letsbe/ai/docker-compose.yml"
OPENCLAW_SERVICE, OPENCLAW_CONFIG = "openclaw", "openclaw.json"
# The compose services the sandbox can run: the module that is their image's entrypoint, and its settings class.
AGENT_MODULES = {
    "safety-wrapper": ("letsbe_safety_wrapper", "letsbe_safety_wrapper.config:SafetyWrapperSettings"),
    "secrets-proxy": ("letsbe_secrets_proxy", "letsbe_secrets_proxy.config:SecretsProxySettings"),
}
# The one thing a sandbox agent gets that the rendered files do not say: that it runs in a sandbox (its logs and
# every answer say so, like the control plane's services). Every key and URL is the provisioner's.
SANDBOX_ENV = {"LETSBE_SANDBOX": "1"}
_UNITS = {"b": 1 / 2**20, "k": 1 / 1024, "m": 1, "g": 1024}


class TenantError(Exception):
    """The rendered tenant cannot run as rendered (an unknown mount, an unmounted path, a remapped port)."""


@dataclass(frozen=True)
class AgentSpec:
    service: str
    argv: tuple[str, ...]
    env: dict[str, str]
    mem_limit_mb: int | None
    address: str
    port: int


def mem_limit_mb(value: object) -> int | None:
    """Compose's ``mem_limit`` (``128m``, ``1g``, bytes) in MB."""
    if value is None:
        return None
    m = re.fullmatch(r"(\d+)\s*([bkmg]?)b?", str(value).strip().lower())
    if not m:
        raise TenantError(f"mem_limit {value!r} is not a size")
    return max(1, int(int(m.group(1)) * _UNITS[m.group(2) or "b"]))


def _env_file(path: Path) -> dict[str, str]:
    if not path.exists():
        raise TenantError(f"env_file {path} does not exist")
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            if not sep:
                raise TenantError(f"{path}: {line!r} is not KEY=VALUE")
            out[key.strip()] = value
    return out


def default_paths(settings_ref: str) -> dict[str, str]:
    """The agent's file paths that no variable is needed for (its defaults), by the variable that would set them."""
    module, _, name = settings_ref.partition(":")
    cls = getattr(importlib.import_module(module), name)
    prefix = cls.env_prefix
    # The defaults as the agent computes them, whatever this process's environment holds.
    defaults = cls(_environ={})
    return {
        f"{prefix}{field}".upper(): str(value)
        for field, value in defaults.model_dump().items()
        if isinstance(value, Path) and value.is_absolute()
    }


class RenderedAgents:
    """Reads the rendered AI compose file of the VPS at ``root`` and says how to run each agent there."""

    def __init__(self, root: Path, address: str):
        self.root = root
        self.address = address
        self.compose = root / AI_COMPOSE.lstrip("/")

    def _host_path(self, source: str) -> Path:
        if source.startswith("/"):
            return self.root / source.lstrip("/")
        if source.startswith("."):
            return (self.compose.parent / source).resolve()
        return self.root / "var/lib/docker/volumes" / source / "_data"  # a named volume

    def _mounts(self, name: str, svc: dict[str, Any]) -> list[tuple[str, Path]]:
        mounts = []
        for vol in svc.get("volumes") or []:
            if isinstance(vol, dict):
                source, target = str(vol.get("source", "")), str(vol["target"])
            else:
                source, target, *_ = [*str(vol).split(":"), ""]
            if not target.startswith("/"):
                raise TenantError(f"{name}: volume {vol!r} has no absolute container path")
            host = self._host_path(source)
            if not host.exists():
                host.mkdir(parents=True, exist_ok=True)  # as dockerd does for a missing bind source
            mounts.append((target.rstrip("/") or "/", host))
        return sorted(mounts, key=lambda m: len(m[0]), reverse=True)  # the longest container path wins

    def _map(self, name: str, key: str, value: str, mounts: list[tuple[str, Path]], hosts: set[str]) -> str:
        if value == "0.0.0.0":  # noqa: S104 - the container's own interfaces are the VPS's address here
            return self.address
        for host in hosts:  # a URL to another container of the project: that container is on this address
            value = value.replace(f"://{host}:", f"://{self.address}:")
        if not value.startswith("/"):
            return value
        for target, host in mounts:
            if value == target or value.startswith(target + "/"):
                return str(host) + value[len(target) :]
        raise TenantError(f"{name}: {key}={value} names a path that no volume of the service mounts")

    def _port(self, name: str, svc: dict[str, Any]) -> int:
        ports = svc.get("ports") or []
        if len(ports) != 1:
            raise TenantError(f"{name}: expected one published port, got {ports!r}")
        parts = str(ports[0]).split(":")
        host_ip, host_port, container_port = (["0.0.0.0", *parts] if len(parts) == 2 else parts)[-3:]  # noqa: S104
        if host_ip not in ("127.0.0.1", "0.0.0.0") or host_port != container_port:  # noqa: S104
            raise TenantError(f"{name}: the sandbox publishes a port only as ip:port:same-port, not {ports[0]!r}")
        return int(host_port)

    def specs(self) -> list[AgentSpec]:
        """One spec per agent service of the compose file: exactly what the provisioner rendered (keys included),
        plus the sandbox marker."""
        if not self.compose.exists():
            raise TenantError(f"{AI_COMPOSE} was not rendered on this VPS")
        doc = yaml.safe_load(self.compose.read_text())
        services = doc.get("services") or {}
        hosts = {str(svc["container_name"]) for svc in services.values() if svc.get("container_name")}
        out = []
        for name, svc in services.items():
            if name == OPENCLAW_SERVICE:
                out.append(self._openclaw(svc))
                continue
            if name not in AGENT_MODULES:
                continue
            module, settings_ref = AGENT_MODULES[name]
            env = self._environment(svc)
            mounts = self._mounts(name, svc)
            env = {k: self._map(name, k, v, mounts, hosts) for k, v in env.items()}
            # A path the agent uses by default is a path inside its container: under a volume it is that volume's
            # file, else it lives in the container's own layer (private to it, lost when it is recreated). Never
            # a path of this machine, and never a file another tenant's agent sees.
            layer = self.root / "var/lib/docker/containers" / name / "rootfs"
            for key, path in default_paths(settings_ref).items():
                if key not in env:
                    try:
                        env[key] = self._map(name, key, path, mounts, hosts)
                    except TenantError:
                        env[key] = str(layer / path.lstrip("/"))
            env.update(SANDBOX_ENV)
            out.append(
                AgentSpec(
                    service=name,
                    argv=(sys.executable, "-m", module),
                    env=env,
                    mem_limit_mb=mem_limit_mb(svc.get("mem_limit")),
                    address=self.address,
                    port=self._port(name, svc),
                )
            )
        if not any(spec.service in AGENT_MODULES for spec in out):
            raise TenantError(f"{AI_COMPOSE} has none of the agent services {sorted(AGENT_MODULES)}")
        return out

    def _environment(self, svc: dict[str, Any]) -> dict[str, str]:
        """A compose service's environment: its ``env_file``s, then its ``environment``."""
        env: dict[str, str] = {}
        env_files = svc.get("env_file") or []
        for f in [env_files] if isinstance(env_files, str) else env_files:
            env.update(_env_file(self.compose.parent / str(f)))
        environment = svc.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(str(e).partition("=")[::2] for e in environment)
        env.update({str(k): "" if v is None else str(v) for k, v in environment.items()})
        return env

    def _openclaw(self, svc: dict[str, Any]) -> AgentSpec:
        """The gateway stand-in, with OpenClaw's rendered environment, on the port of the rendered openclaw.json."""
        path = self.compose.parent / OPENCLAW_CONFIG
        try:  # JSON5 as rendered: JSON with whole-line // comments
            text = "\n".join(line for line in path.read_text().splitlines() if not line.strip().startswith("//"))
            port = int(json.loads(text)["gateway"]["port"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TenantError(f"{OPENCLAW_CONFIG}: no readable gateway port ({exc})") from exc
        env = self._environment(svc) | SANDBOX_ENV | {HOST_VAR: self.address, PORT_VAR: str(port)}
        return AgentSpec(service=OPENCLAW_SERVICE, argv=(sys.executable, "-m", "letsbe_sandbox.openclaw"), env=env,
                         mem_limit_mb=mem_limit_mb(svc.get("mem_limit")), address=self.address, port=port)


class Vps:
    """One fake Hetzner server's machine: SSH, Docker Engine, and (after step 10) its agents."""

    def __init__(
        self,
        root: Path,
        server: Mapping[str, Any],
        *,
        port: int,
        host_key: asyncssh.SSHKey,
        client_key: asyncssh.SSHKey,
    ):
        self.server_id = int(server["id"])
        self.labels = dict(server.get("labels") or {})
        self.address = server["public_net"]["ipv4"]["ip"]
        stype = server["server_type"]
        self.root = root / self.address
        self.target = SshTarget(
            self.root,
            cpus=int(stype["cores"]),
            mem_mb=int(float(stype["memory"]) * 1024),
            disk_gb=int(stype["disk"]),
            host=self.address,
            port=port,
            host_key=host_key,
            client_key=client_key,
        )
        self.docker = DockerEngineFake(self.root / "var/run/docker.sock")
        self.agents: dict[str, subprocess.Popen[bytes]] = {}
        self.agents_started_at: float | None = None  # wall clock of the last start (the benchmark's stages)
        self.error: str | None = None
        self._ups = 0
        self._calls_seen: tuple[int, int] | None = None  # the call log's size and mtime at the last poll

    def start(self) -> Vps:
        self.target.start()
        self.docker.start()
        return self

    def stop(self) -> None:
        self.stop_agents()
        self.docker.stop()
        self.target.stop()

    def path(self, system_path: str) -> Path:
        return self.target.path(system_path)

    def log_path(self, service: str) -> Path:
        return self.path(f"/var/log/letsbe/{service}.log")

    def _compose_calls(self) -> list[tuple[str, list[str]]]:
        """Each ``docker compose … up|stop`` of the AI stack so far, in order: the verb and the services it names
        ([] names none: all)."""
        project = str(self.path(AI_COMPOSE).parent)
        out = []
        for argv in self.target.calls("docker", containing="compose"):
            if "compose" not in argv or project not in argv:
                continue
            verb = next((a for a in argv if a in ("up", "stop")), None)
            if verb is not None:
                out.append((verb, [a for a in argv[argv.index(verb) + 1 :] if not a.startswith("-")]))
        return out

    def poll(self) -> None:
        """Start (or recreate) the agents after each ``docker compose up`` of the AI stack: those it names (as
        ``up --no-deps SERVICE…`` recreates only them), or all; stop those a ``docker compose stop`` names (a
        decommission). After a restart of the sandbox the recorded calls are seen again, in order: the agents come
        back as containers do after a reboot, and stopped ones stay stopped."""
        # Every SSH command's end polls every VPS: one whose call log is unchanged is not read again (parsing every
        # VPS's whole log each time held the GIL of the process serving the SSH commands).
        try:
            stat = (self.target.ctl / "calls.log").stat()
            seen = (stat.st_size, stat.st_mtime_ns)
        except FileNotFoundError:
            seen = None
        if seen is not None and seen == self._calls_seen:
            return
        self._calls_seen = seen
        calls = self._compose_calls()
        new, self._ups = calls[self._ups :], len(calls)
        for verb, group in itertools.groupby(new, key=lambda c: c[0]):  # e.g. the ups replayed after a restart
            run = [named for _, named in group]
            names = set().union(*run) if all(run) else None
            if verb == "up":
                self.start_agents(None if names is None or not self.agents else names)
            else:
                self.stop_agents(names)

    def start_agents(self, only: set[str] | None = None) -> None:
        """(Re)start every agent of the rendered compose file, or only the ``only`` services among them."""
        self.stop_agents(only)
        try:
            specs = RenderedAgents(self.root, self.address).specs()
        except (TenantError, yaml.YAMLError, OSError) as exc:
            self.error = str(exc)
            log.error("sandbox tenant cannot start its agents", vps=self.address, error=self.error)
            print(f"sandbox VPS {self.address}: the rendered AI stack cannot run: {exc}", file=sys.stderr, flush=True)
            return
        self.error = None
        self.agents_started_at = time.time()
        for spec in specs:
            if only is not None and spec.service not in only:
                continue
            self.agents[spec.service] = memlimit.spawn(
                spec.argv, env=spec.env, mem_limit_mb=spec.mem_limit_mb, log_path=self.log_path(spec.service)
            )
            log.info("sandbox agent started", vps=self.address, agent=spec.service, port=spec.port)

    def stop_agents(self, only: set[str] | None = None) -> None:
        stopping = {name: proc for name, proc in self.agents.items() if only is None or name in only}
        for proc in stopping.values():
            if proc.poll() is None:
                proc.terminate()
        for name, proc in stopping.items():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            del self.agents[name]
