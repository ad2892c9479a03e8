"""Command handlers: each agent registers the command types it runs.

    async def kill_switch(ctx: CommandContext) -> Outcome:
        ...
        return Outcome.succeeded(stopped=3)

    runtime.commands.register("kill-switch", kill_switch)

A handler gets the command (``ctx.command``, params validated by the type given at registration, a
``letsbe_agent.wire`` struct or a pydantic model, as ``ctx.params``), can keep data in the journal while it runs
(``ctx.record(...)``, survives a restart), and returns an :class:`Outcome`. An exception is a FAILED outcome;
running past the command's deadline is TIMED_OUT. An optional ``recover`` function is called for a command that
was running when the agent stopped (instead of running it again); without one such a command is reported FAILED.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from letsbe_agent.journal import CommandJournal
from letsbe_agent.wire import CONTROL_CHARACTERS, CommandOut


@dataclass(frozen=True)
class Outcome:
    status: Literal["SUCCEEDED", "FAILED", "ROLLED_BACK", "TIMED_OUT"]
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @classmethod
    def succeeded(cls, **result: Any) -> Outcome:
        return cls("SUCCEEDED", result)

    @classmethod
    def failed(cls, error: str, **result: Any) -> Outcome:
        return cls("FAILED", result, error[:4000])

    @classmethod
    def rolled_back(cls, error: str, **result: Any) -> Outcome:
        return cls("ROLLED_BACK", result, error[:4000])

    def wire(self) -> dict[str, Any]:
        return {"status": self.status, "result": printable(self.result), "error": printable(self.error)}


def printable(value: Any) -> Any:
    """``value`` with every control character in its text (keys too, at any depth) replaced by U+FFFD: the hub
    refuses them in anything it is sent, and a tool's output with a terminal colour code or a NUL would turn the
    whole result into a 422 (the command would then time out instead of reporting)."""
    if isinstance(value, str):
        return CONTROL_CHARACTERS.sub("\ufffd", value)
    if isinstance(value, dict):
        return {printable(k): printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [printable(v) for v in value]
    return value


@dataclass
class CommandContext:
    command: CommandOut
    params: Any  # the validated params model, or the raw dict when the handler registered none
    journal: CommandJournal
    data: dict[str, Any]  # what this command recorded so far (non-empty when recovering)

    def record(self, **data: Any) -> None:
        self.data.update(data)
        self.journal.record(self.command.id, **data)


Handler = Callable[[CommandContext], Awaitable[Outcome]]


@dataclass(frozen=True)
class Registration:
    handler: Handler
    params: type | None  # a letsbe_agent.wire struct, or a pydantic model (the Safety Wrapper's own commands)
    recover: Handler | None


class CommandRegistry:
    def __init__(self) -> None:
        self._handlers: dict[str, Registration] = {}

    def register(
        self,
        command_type: str,
        handler: Handler,
        *,
        params: type | None = None,
        recover: Handler | None = None,
    ) -> None:
        if command_type in self._handlers:
            raise ValueError(f"a handler for {command_type!r} is already registered")
        self._handlers[command_type] = Registration(handler, params, recover)

    def get(self, command_type: str) -> Registration | None:
        return self._handlers.get(command_type)

    @property
    def types(self) -> list[str]:
        return sorted(self._handlers)
