"""Hub commands for the tool gate: ``kill-switch`` and ``set-autonomy``.

Each handler takes the command's params (validated here) and returns the result the agent reports back.
Both are idempotent: running one twice leaves the same state.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from letsbe_agent.commands import CommandContext, CommandRegistry, Outcome
from letsbe_safety_wrapper.tools.service import ToolService


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


HANDLERS = {"kill-switch": (kill_switch, KillSwitchParams), "set-autonomy": (set_autonomy, SetAutonomyParams)}


def register(registry: CommandRegistry, tools: ToolService) -> None:
    """Hook the handlers into the agent runtime's command registry (letsbe_agent.commands)."""
    for command_type, (handler, params) in HANDLERS.items():

        async def run(ctx: CommandContext, handler: Any = handler) -> Outcome:
            params = ctx.params.model_dump() if isinstance(ctx.params, BaseModel) else dict(ctx.params)
            return Outcome.succeeded(**await handler(tools, params))

        registry.register(command_type, run, params=params)
