"""Commands for agents: QUEUED → DELIVERED → RUNNING → SUCCEEDED / FAILED / TIMED_OUT / ROLLED_BACK / CANCELLED.

Transitions are the table below, a ``letsbe_platform.state`` machine applied in :func:`transition` (nothing else
writes the status column) and recorded in ``command_transitions``. Every agent-facing function takes the agent's
principal and only ever matches commands of that agent's tenant and kind: a command of another tenant is "not found".
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Counter
from pydantic import BaseModel, ValidationError
from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts.agent import (
    TENANT_KEYS,
    TERMINAL_COMMAND_STATUSES,
    CommandAckResponse,
    CommandOut,
    CommandResultRequest,
    CommandStatus,
    ConfigSyncParams,
    RestartParams,
    ResumeParams,
    RotateCredentialParams,
    SuspendParams,
    UpdateParams,
)
from letsbe_contracts.enums import AgentKind
from letsbe_contracts.events import TenantKeyRotationReportedV1, TenantKeyRotationRequestedV1
from letsbe_hub.commands import repository as repo
from letsbe_hub.commands.errors import CommandNotFound, CommandStateConflict, TenantDecommissioned
from letsbe_hub.commands.models import Command, CommandTransition
from letsbe_hub.commands.schemas import CommandView, TransitionView
from letsbe_hub.db import outbox
from letsbe_hub.tenants import repository as tenants_repo
from letsbe_hub.tenants.auth import AgentPrincipal
from letsbe_hub.tenants.errors import TenantNotFound
from letsbe_hub.tenants.models import TenantState
from letsbe_platform import state
from letsbe_platform.errors import Unprocessable
from letsbe_platform.logging import get_logger
from letsbe_platform.outbox import add_event

log = get_logger(__name__)

COMMANDS_FINISHED = Counter("hub_commands_finished_total", "Commands that reached a final state", ["type", "status"])

S = CommandStatus
ALLOWED: dict[str, frozenset[str]] = {
    S.QUEUED: frozenset({S.DELIVERED, S.CANCELLED, S.TIMED_OUT}),
    # A result may arrive without its ack having been seen (the ack's answer was lost, the result was buffered).
    S.DELIVERED: frozenset({S.RUNNING, S.CANCELLED, S.TIMED_OUT, S.SUCCEEDED, S.FAILED, S.ROLLED_BACK}),
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.ROLLED_BACK, S.TIMED_OUT}),
}
# Parameters of the command types the hub knows are validated when queued; other types (registered by an agent,
# e.g. the Safety Wrapper's kill switch) pass through as given.
PARAMS: dict[str, type[BaseModel]] = {
    "update": UpdateParams,
    "restart": RestartParams,
    "config-sync": ConfigSyncParams,
    "rotate-credential": RotateCredentialParams,
    "suspend": SuspendParams,  # billing: unpaid past the grace period (billing.service)
    "resume": ResumeParams,
}
# rotate-credential of the tenant's AI-stack keys runs on the provisioner, which generated, keeps and renders them: the
# hub hands it the command through the outbox (TenantKeyRotationRequestedV1) and moves the command along as the
# provisioner reports (TenantKeyRotationReportedV1). No agent pulls these commands.
PROVISIONER = "provisioner"
# Grace on top of a command's own deadline before the hub calls it TIMED_OUT (the agent reports its own timeouts).
DEADLINE_GRACE = timedelta(seconds=60)


def agent_for(command_type: str, params: dict[str, Any]) -> AgentKind:
    """Who runs a command. An agent cannot restart itself mid-update, so each updates the other:
    the Secrets Proxy updates the Safety Wrapper, the Safety Wrapper updates everything else. A credential is
    rotated by the agent that holds it."""
    if command_type == "update" and params.get("component") == AgentKind.SAFETY_WRAPPER.value:
        return AgentKind.SECRETS_PROXY
    if command_type == "rotate-credential" and params.get("credential") == "llm-key":
        return AgentKind.SECRETS_PROXY  # the only holder of the tenant's LLM relay key
    return AgentKind.SAFETY_WRAPPER


def runs_on_provisioner(command_type: str, params: dict[str, Any]) -> bool:
    return command_type == "rotate-credential" and params.get("credential") in TENANT_KEYS


def validate_params(command_type: str, params: dict[str, Any]) -> dict[str, Any]:
    model = PARAMS.get(command_type)
    if model is None:
        return params
    try:
        return model.model_validate(params).model_dump(mode="json")
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:10])
        raise Unprocessable(f"Invalid parameters for '{command_type}': {problems}") from None


async def enqueue(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    command_type: str,
    params: dict[str, Any],
    actor: str,
    agent: AgentKind | None = None,
    idempotency_key: str | None = None,
    expires_in: timedelta = timedelta(hours=24),
    deadline_seconds: int = 900,
    rollout_id: uuid.UUID | None = None,
) -> tuple[Command, bool]:
    """Queue a command; returns (command, created). The same idempotency key returns the first command."""
    tenant = await tenants_repo.get_tenant(session, tenant_id)
    if tenant is None:
        raise TenantNotFound("No tenant with that id.")
    if tenant.status == TenantState.DECOMMISSIONED:  # no agent will ever pull it, and its keys must not be re-issued
        raise TenantDecommissioned(f"Tenant {tenant_id} is decommissioned: it takes no commands.")
    params = validate_params(command_type, params)
    on_provisioner = runs_on_provisioner(command_type, params)
    if on_provisioner and agent is not None:
        raise Unprocessable(f"The provisioner rotates the {params['credential']}, not an agent: leave 'agent' unset.")
    key = idempotency_key or f"auto:{uuid.uuid4()}"
    row = await repo.insert_command(
        session,
        {
            "id": uuid.uuid4(),
            "tenant_id": tenant_id,
            "agent_kind": PROVISIONER if on_provisioner else (agent or agent_for(command_type, params)).value,
            "type": command_type,
            "params": params,
            "idempotency_key": key,
            "status": S.QUEUED.value,
            "created_by": actor,
            "expires_at": datetime.now(UTC) + expires_in,
            "deadline_seconds": deadline_seconds,
            "deliveries": 0,
            "rollout_id": rollout_id,
        },
    )
    if row is None:
        existing = await repo.by_key(session, tenant_id, key)
        assert existing is not None
        return existing, False
    await state.created(session, MACHINE, row, actor=actor)
    if on_provisioner:
        await add_event(
            session,
            outbox,
            TenantKeyRotationRequestedV1(
                command_id=row.id,
                tenant_id=tenant_id,
                key=params["credential"],
                requested_by=actor,
                expires_at=row.expires_at,
            ),
            correlation_id=tenant_id,
            event_id=row.id,
        )
    await repo.notify(session, tenant_id)
    log.info("command queued", tenant_id=str(tenant_id), command_id=str(row.id), type=command_type)
    return row, True


async def _on_change(session: AsyncSession, change: state.Change) -> None:
    if change.to_status in TERMINAL_COMMAND_STATUSES:
        COMMANDS_FINISHED.labels(change.row.type, change.to_status).inc()


MACHINE = state.Machine(
    noun="command",
    model=Command,
    transitions=ALLOWED,
    history=CommandTransition,
    history_key="command_id",
    on_change=_on_change,
    conflict=CommandStateConflict,
    id_field="command_id",
)


async def transition(
    session: AsyncSession, command: Command, to: CommandStatus, *, actor: str, reason: str | None = None, **fields: Any
) -> Command | None:
    """Compare-and-set from the command's current status; None if it moved meanwhile or the move is not allowed."""
    return await state.try_transition(
        session, MACHINE, command.id, command.status, to, actor=actor, reason=reason, **fields
    )


# --- agent side -----------------------------------------------------------------------------------------------


async def pull(
    session: AsyncSession, agent: AgentPrincipal, *, redeliver_after: timedelta, limit: int = 10
) -> list[CommandOut]:
    rows = await repo.due_for_delivery(session, agent.tenant_id, agent.kind.value, redeliver_after, limit)
    for c in rows:
        if c.status == S.QUEUED:
            delivered = {"delivered_at": func.now(), "deliveries": Command.deliveries + 1}
            await transition(session, c, S.DELIVERED, actor=f"agent:{agent.agent_id}", **delivered)
        else:
            await repo.redeliver(session, c)
    return [CommandOut.model_validate(c, from_attributes=True) for c in rows]


async def _own(session: AsyncSession, agent: AgentPrincipal, command_id: uuid.UUID) -> Command:
    c = await repo.get(session, command_id, lock=True)
    if c is None or c.tenant_id != agent.tenant_id or c.agent_kind != agent.kind.value:
        raise CommandNotFound("No such command for this agent.")
    return c


async def ack(session: AsyncSession, agent: AgentPrincipal, command_id: uuid.UUID) -> CommandAckResponse:
    """The agent journaled the command and is about to run it. Repeats are harmless."""
    c = await _own(session, agent, command_id)
    if c.status in (S.QUEUED, S.DELIVERED):
        if c.expires_at <= datetime.now(UTC):
            await transition(session, c, S.TIMED_OUT, actor="hub", reason="expired before it ran", finished_at=_now())
            return CommandAckResponse(run=False, status=S.TIMED_OUT)
        now = _now()
        moved = await transition(
            session,
            c,
            S.RUNNING,
            actor=f"agent:{agent.agent_id}",
            started_at=now,
            deadline_at=now + timedelta(seconds=c.deadline_seconds) + DEADLINE_GRACE,
        )
        assert moved is not None  # row is locked
        return CommandAckResponse(run=True, status=S.RUNNING)
    return CommandAckResponse(run=c.status == S.RUNNING, status=S(c.status))


async def report(
    session: AsyncSession, agent: AgentPrincipal, command_id: uuid.UUID, body: CommandResultRequest
) -> CommandView:
    """The outcome. The same outcome twice is accepted once (a buffered result resent); another one is a 409."""
    c = await _own(session, agent, command_id)
    to = S(body.status)
    if c.status in TERMINAL_COMMAND_STATUSES:
        if c.status == to:
            return view(c)
        raise CommandStateConflict(f"The command is already {c.status}.", current_status=c.status)
    moved = await transition(
        session,
        c,
        to,
        actor=f"agent:{agent.agent_id}",
        reason=body.error,
        finished_at=_now(),
        result=body.result,
        error=body.error,
    )
    if moved is None:
        raise CommandStateConflict(f"A {c.status} command cannot become {to}.", current_status=c.status)
    if to == S.SUCCEEDED and moved.type == "update":
        p = moved.params
        await tenants_repo.upsert_component(
            session, moved.tenant_id, p["component"], version=p.get("version"), digest=p.get("digest")
        )
    log.info("command finished", tenant_id=str(c.tenant_id), command_id=str(c.id), status=to.value)
    return view(moved)


# --- provisioner side (key rotations) ----------------------------------------------------------------------------


async def provisioner_report(session: AsyncSession, event: TenantKeyRotationReportedV1) -> None:
    """Move a key-rotation command to what the provisioner reports, through the states it skipped (it takes the
    command without a pull or an ack). A report that arrives late or twice changes nothing."""
    c = await repo.get(session, event.command_id, lock=True)
    if c is None or c.tenant_id != event.tenant_id or c.agent_kind != PROVISIONER:
        log.warning("key-rotation report for no such command", command_id=str(event.command_id))
        return
    now = _now()
    if c.status == S.QUEUED:
        c = await transition(session, c, S.DELIVERED, actor=PROVISIONER, delivered_at=now, deliveries=1) or c
    if c.status == S.DELIVERED:
        deadline = now + timedelta(seconds=c.deadline_seconds) + DEADLINE_GRACE
        c = await transition(session, c, S.RUNNING, actor=PROVISIONER, started_at=now, deadline_at=deadline) or c
    if event.status != "RUNNING" and c.status == S.RUNNING:
        ok = event.status == "SUCCEEDED"
        await transition(
            session,
            c,
            S(event.status),
            actor=PROVISIONER,
            reason=event.error,
            finished_at=now,
            result={"credential": event.key, "recreated": list(event.recreated)} if ok else None,
            error=event.error,
        )
        log.info("key rotation finished", tenant_id=str(c.tenant_id), command_id=str(c.id), status=event.status)


# --- admin side -------------------------------------------------------------------------------------------------


async def cancel(session: AsyncSession, command_id: uuid.UUID, *, actor: str, reason: str | None = None) -> CommandView:
    c = await repo.get(session, command_id, lock=True)
    if c is None:
        raise CommandNotFound("No command with that id.")
    if c.agent_kind == PROVISIONER and c.status not in TERMINAL_COMMAND_STATUSES:
        raise CommandStateConflict(
            "A key rotation cannot be cancelled: the provisioner takes it as soon as it is queued.",
            current_status=c.status,
        )
    moved = await transition(session, c, S.CANCELLED, actor=actor, reason=reason, finished_at=_now())
    if moved is None:
        raise CommandStateConflict(f"A {c.status} command cannot be cancelled.", current_status=c.status)
    return view(moved)


async def get_view(session: AsyncSession, command_id: uuid.UUID) -> CommandView:
    c = await repo.get(session, command_id)
    if c is None:
        raise CommandNotFound("No command with that id.")
    v = view(c)
    v.transitions = [
        TransitionView.model_validate(t, from_attributes=True) for t in await repo.transitions_of(session, command_id)
    ]
    return v


async def sweep(session: AsyncSession) -> int:
    """Time out what ran past its deadline and what expired before it ran."""
    n = 0
    now = _now()
    for c in await repo.overdue(session, now):
        reason = "no result before the deadline" if c.status == S.RUNNING else "expired before it ran"
        if await transition(session, c, S.TIMED_OUT, actor="hub", reason=reason, finished_at=now):
            n += 1
    return n


def view(c: Command) -> CommandView:
    return CommandView(
        id=c.id,
        tenant_id=c.tenant_id,
        agent=c.agent_kind,
        type=c.type,
        params=c.params,
        idempotency_key=c.idempotency_key,
        status=c.status,
        created_at=c.created_at,
        created_by=c.created_by,
        expires_at=c.expires_at,
        deadline_seconds=c.deadline_seconds,
        delivered_at=c.delivered_at,
        deliveries=c.deliveries,
        started_at=c.started_at,
        finished_at=c.finished_at,
        result=c.result,
        error=c.error,
        rollout_id=c.rollout_id,
    )


def _now() -> datetime:
    return datetime.now(UTC)
