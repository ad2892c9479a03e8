"""The update, restart and config-sync commands.

Update on one tenant: precheck (free disk, no backup running, not already on the target digest) → pull → record
the previous container (in the journal: survives a restart) → stop and remove the old one → create and start the
new one → healthy *continuously* for ``min_healthy_seconds`` within ``deadline_seconds`` → SUCCEEDED. Anything
else rolls back locally to the recorded container (no hub needed) → ROLLED_BACK; a rollback that fails too is
FAILED with ``rollback_failed: true``, which aborts a fleet rollout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from letsbe_agent.commands import CommandContext, CommandRegistry, Outcome
from letsbe_agent.docker import DockerClient, DockerError, _health, create_body
from letsbe_agent.files import read_json, write_json
from letsbe_agent.wire import ConfigSyncParams, RestartParams, UpdateParams
from letsbe_platform.logging import get_logger

log = get_logger(__name__)


class Updater:
    def __init__(
        self,
        docker: DockerClient,
        *,
        own_component: str,
        free_disk_bytes: Callable[[], int],
        backup_running: Callable[[], bool],
        poll_seconds: float = 1.0,
    ):
        self.docker = docker
        self.own_component = own_component
        self.free_disk_bytes = free_disk_bytes
        self.backup_running = backup_running
        self.poll = poll_seconds

    def register(self, registry: CommandRegistry) -> None:
        registry.register("update", self.update, params=UpdateParams, recover=self.recover)
        registry.register("restart", self.restart, params=RestartParams)

    # --- update ----------------------------------------------------------------------------------------------

    async def update(self, ctx: CommandContext) -> Outcome:
        p: UpdateParams = ctx.params
        name = p.container or p.component
        target = f"{p.image}@{p.digest}"
        deadline = time.monotonic() + p.deadline_seconds
        if p.component == self.own_component:
            return Outcome.failed(f"precheck: the {p.component} agent does not replace its own container")
        free = self.free_disk_bytes()
        if free < p.min_free_disk_bytes:
            return Outcome.failed(f"precheck: {free} bytes free, {p.min_free_disk_bytes} needed", free_disk_bytes=free)
        if self.backup_running():
            return Outcome.failed("precheck: a backup is running")
        current = await self.docker.inspect(name)
        if current is None:
            return Outcome.failed(f"precheck: no container named {name}")
        current_image = current.get("Config", {}).get("Image", "")
        if current_image == target:
            return Outcome.succeeded(digest=p.digest, version=p.version, already_current=True)
        try:
            await self.docker.pull(target)
        except DockerError as exc:
            return Outcome.failed(f"pull failed: {exc}")
        ctx.record(
            phase="pulled",
            previous={"name": name, "image": current_image, "body": create_body(current, current_image)},
            target=target,
        )
        log.info("updating container", container=name, image=target, previous=current_image)
        try:
            await self.docker.stop(current["Id"])
            await self.docker.remove(current["Id"], force=True)
            ctx.record(phase="replacing")
            new_id = await self.docker.create(name, create_body(current, target))
            await self.docker.start(new_id)
        except DockerError as exc:
            return await self._rollback(ctx, p, f"starting the new container failed: {exc}")
        ctx.record(phase="verifying", new_id=new_id)
        healthy, why = await self._healthy_for(new_id, p.min_healthy_seconds, deadline)
        if healthy:
            ctx.record(phase="done")
            return Outcome.succeeded(digest=p.digest, version=p.version, previous_image=current_image)
        return await self._rollback(ctx, p, why)

    async def _healthy_for(self, container_id: str, min_seconds: float, deadline: float) -> tuple[bool, str]:
        """Healthy (or, without a health check, running) without a break for ``min_seconds``, before ``deadline``."""
        since: float | None = None
        restarts: int | None = None
        while True:
            info = await self.docker.inspect(container_id)
            if info is None:
                return False, "the new container disappeared"
            state = info.get("State", {})
            count = int(info.get("RestartCount", 0))
            restarts = count if restarts is None else restarts
            if count > restarts:
                return False, f"the new container restarted ({count} restarts)"
            if not state.get("Running"):
                return False, (
                    f"the new container is {state.get('Status', 'not running')} "
                    f"(exit {state.get('ExitCode')}, oom_killed={state.get('OOMKilled', False)})"
                )
            health = _health(state)
            if health == "unhealthy":
                return False, "the new container failed its health check"
            now = time.monotonic()
            if health in ("healthy", "none"):
                since = since if since is not None else now
                if now - since >= min_seconds:
                    return True, ""
            else:
                since = None
            if now >= deadline:
                return False, f"not healthy for {min_seconds:g}s within the deadline"
            await asyncio.sleep(min(self.poll, max(0.01, deadline - now)))

    async def _rollback(self, ctx: CommandContext, p: UpdateParams | None, why: str) -> Outcome:
        prev = ctx.data["previous"]
        log.warning("update failed; rolling back", container=prev["name"], reason=why)
        ctx.record(phase="rolling-back", failure=why)
        min_healthy = p.min_healthy_seconds if p else 0
        deadline = time.monotonic() + (p.deadline_seconds if p else 300)
        try:
            existing = await self.docker.inspect(prev["name"])
            if existing is not None:
                await self.docker.stop(existing["Id"])
                await self.docker.remove(existing["Id"], force=True)
            old_id = await self.docker.create(prev["name"], prev["body"])
            await self.docker.start(old_id)
            ok, why2 = await self._healthy_for(old_id, min_healthy, deadline)
        except DockerError as exc:
            ok, why2 = False, str(exc)
        if not ok:
            ctx.record(phase="rollback-failed")
            log.error("rollback failed", container=prev["name"], reason=why2)
            return Outcome.failed(f"{why}; rollback failed: {why2}", rollback_failed=True, previous_image=prev["image"])
        ctx.record(phase="rolled-back")
        return Outcome.rolled_back(why, previous_image=prev["image"], rolled_back_to=prev["image"])

    async def recover(self, ctx: CommandContext) -> Outcome:
        """The agent stopped while this update ran: finish it from what the journal says, never run it again."""
        prev = ctx.data.get("previous")
        if prev is None:
            return Outcome.failed("interrupted by an agent restart before anything changed; not re-run")
        p = ctx.params
        info = await self.docker.inspect(prev["name"])
        if info is not None and info.get("State", {}).get("Running"):
            image = info.get("Config", {}).get("Image")
            if image == ctx.data.get("target") and _health(info["State"]) in ("healthy", "none"):
                return Outcome.succeeded(
                    digest=p.digest, version=p.version, previous_image=prev["image"], recovered=True
                )
            if image == prev["image"]:
                return Outcome.failed("interrupted by an agent restart; the previous version still runs")
        return await self._rollback(ctx, p, "interrupted by an agent restart during the switch")

    # --- restart ---------------------------------------------------------------------------------------------

    async def restart(self, ctx: CommandContext) -> Outcome:
        p: RestartParams = ctx.params
        done = []
        for name in p.containers:
            try:
                await self.docker.restart(name, p.timeout_seconds)
            except DockerError as exc:
                return Outcome.failed(f"restart of {name} failed: {exc}", restarted=done)
            done.append(name)
        return Outcome.succeeded(restarted=done)


class ConfigSync:
    """config-sync: the hub's configuration for this agent, kept on disk; listeners apply it (newest version wins)."""

    def __init__(self, path: Path):
        self.path = path
        self._listeners: list[Callable[[dict[str, Any]], Any]] = []

    def register(self, registry: CommandRegistry) -> None:
        registry.register("config-sync", self.sync, params=ConfigSyncParams)

    def on_change(self, listener: Callable[[dict[str, Any]], Any]) -> None:
        self._listeners.append(listener)

    @property
    def current(self) -> dict[str, Any]:
        return read_json(self.path) or {"version": 0, "config": {}}

    async def sync(self, ctx: CommandContext) -> Outcome:
        p: ConfigSyncParams = ctx.params
        have = self.current
        if p.version <= have["version"]:
            return Outcome.succeeded(version=have["version"], unchanged=True)
        write_json(self.path, {"version": p.version, "config": p.config})
        for listener in self._listeners:
            result = listener(p.config)
            if asyncio.iscoroutine(result):
                await result
        return Outcome.succeeded(version=p.version)
