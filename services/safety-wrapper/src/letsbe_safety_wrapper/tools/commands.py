"""Hub commands for the tool gate: ``kill-switch``, ``set-autonomy``, and billing's ``suspend``/``resume``.

Each handler takes the command's params (validated here) and returns the result the agent reports back.
All are idempotent: running one twice leaves the same state.

``suspend`` (the subscription is unpaid past its grace period) engages the kill switch and stops every container of
the customer's tools (those the provisioner labelled ``biz.letsbe.tool``: app, database, cache). Stopped, not
removed: volumes and data stay, and ``restart: unless-stopped`` keeps them down across a reboot. ``resume`` starts
them again and releases the kill switch.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from letsbe_agent.commands import CommandContext, CommandRegistry, Outcome
from letsbe_agent.docker import DockerClient
from letsbe_contracts.agent import ResumeParams, SuspendParams
from letsbe_safety_wrapper.tools.service import ToolService

TOOL_LABEL = "biz.letsbe.tool"
SUSPENDED_PREFIX = "suspended: "


class KillSwitchParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    engaged: bool
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None


class SetAutonomyParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    level: Annotated[int, Field(ge=0, le=100)]


async def kill_switch(tools: ToolService, params: dict[str, Any]) -> dict[str, Any]:
    p = KillSwitchParams.model_validate(params)
    await tools.set_kill_switch(p.engaged, p.reason, actor="hub")
    return {"kill_switch": p.engaged}


async def set_autonomy(tools: ToolService, params: dict[str, Any]) -> dict[str, Any]:
    p = SetAutonomyParams.model_validate(params)
    await tools.set_autonomy(p.level, actor="hub")
    return {"autonomy_level": p.level}


async def _tool_containers(docker: DockerClient) -> list[dict[str, Any]]:
    return [c for c in await docker.list_containers() if TOOL_LABEL in (c.get("Labels") or {})]


def _name(container: dict[str, Any]) -> str:
    return ((container.get("Names") or [""])[0].lstrip("/")) or container["Id"][:12]


async def suspend(tools: ToolService, docker: DockerClient, params: dict[str, Any]) -> dict[str, Any]:
    p = SuspendParams.model_validate(params)
    await tools.set_kill_switch(True, SUSPENDED_PREFIX + p.reason, actor="hub")  # first: no call starts meanwhile
    stopped = []
    for c in await _tool_containers(docker):
        if c.get("State") == "running":
            await docker.stop(c["Id"])
            stopped.append(_name(c))
    return {"suspended": True, "stopped": sorted(stopped)}


async def resume(tools: ToolService, docker: DockerClient, params: dict[str, Any]) -> dict[str, Any]:
    ResumeParams.model_validate(params)
    started = []
    for c in await _tool_containers(docker):
        if c.get("State") != "running":
            await docker.start(c["Id"])
            started.append(_name(c))
    st = tools.state.state
    if st.kill_switch and (st.kill_switch_reason or "").startswith(SUSPENDED_PREFIX):
        # Only billing's own stop is released: an operator's kill switch stays until the operator lifts it.
        await tools.set_kill_switch(False, None, actor="hub")
    return {"suspended": False, "started": sorted(started)}


HANDLERS = {"kill-switch": (kill_switch, KillSwitchParams), "set-autonomy": (set_autonomy, SetAutonomyParams)}
DOCKER_HANDLERS = {"suspend": (suspend, SuspendParams), "resume": (resume, ResumeParams)}


def register(registry: CommandRegistry, tools: ToolService, docker: DockerClient | None = None) -> None:
    """Hook the handlers into the agent runtime's command registry (letsbe_agent.commands)."""
    for command_type, (handler, params) in HANDLERS.items():

        async def run(ctx: CommandContext, handler: Any = handler) -> Outcome:
            params = ctx.params.model_dump() if isinstance(ctx.params, BaseModel) else dict(ctx.params)
            return Outcome.succeeded(**await handler(tools, params))

        registry.register(command_type, run, params=params)
    if docker is None:
        return
    for command_type, (handler, params) in DOCKER_HANDLERS.items():

        async def run_with_docker(ctx: CommandContext, handler: Any = handler) -> Outcome:
            params = ctx.params.model_dump() if isinstance(ctx.params, BaseModel) else dict(ctx.params)
            return Outcome.succeeded(**await handler(tools, docker, params))

        registry.register(command_type, run_with_docker, params=params)
