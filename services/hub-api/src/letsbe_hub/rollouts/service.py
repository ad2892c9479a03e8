"""Fleet rollouts: one component to one image digest, stage by stage.

Statuses: RUNNING ⇄ PAUSED, RUNNING → AWAITING_APPROVAL → RUNNING, → COMPLETED, → ABORTED (from any active one).
Cohorts are fixed at creation (stable): the staging stage takes the staging tenants, the share stages take
cumulative shares of the other ACTIVE tenants, newest first, at least one tenant each while any are left.
A tenant already at or above the version is never part of it (never downgrade), checked again at dispatch.

:func:`tick` advances one rollout; the engine calls it every few seconds, one replica per rollout at a time
(``FOR UPDATE SKIP LOCKED`` on the rollout row). Inside a stage at most ``concurrency`` updates run at once. When
all of a stage's targets are done, its gate decides: abort (any failed rollback, or failures above the stage's
limit), pause (inconclusive: results that never came), or soak and then promote (an operator approves a stage that
requires it). During the soak the updated tenants must keep heartbeating, or the rollout pauses.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Any

from packaging.version import InvalidVersion, Version
from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts.agent import CommandStatus
from letsbe_hub.commands import service as commands
from letsbe_hub.commands.repository import open_for_rollout
from letsbe_hub.rollouts import gates
from letsbe_hub.rollouts import repository as repo
from letsbe_hub.rollouts.models import ACTIVE, FINAL, ROLLOUT, TARGET, Rollout, RolloutTarget
from letsbe_hub.rollouts.models import RolloutStatus as R
from letsbe_hub.rollouts.models import TargetStatus as T
from letsbe_hub.rollouts.schemas import RolloutAbort, RolloutCreate, RolloutView, StageSpec, StageView, TargetView
from letsbe_platform import state
from letsbe_platform.errors import Conflict, NotFound
from letsbe_platform.logging import get_logger
from letsbe_platform.pagination import Page

log = get_logger(__name__)

NOT_IN_ANY_STAGE = -1  # already at or above the version when the rollout was created


class RolloutNotFound(NotFound):
    type, title = "rollout-not-found", "Rollout not found"


class RolloutConflict(Conflict):
    type, title = "rollout-conflict", "Rollout state conflict"


def newer(candidate: str, than: str | None) -> bool:
    """True if ``candidate`` is a newer version than ``than`` (unknown ``than``: yes; unparsable: only if different)."""
    if than is None:
        return True
    try:
        return Version(candidate) > Version(than)
    except InvalidVersion:
        return candidate != than


def _stages(r: Rollout) -> list[StageSpec]:
    return [StageSpec.model_validate(s) for s in r.stages]


async def create(session: AsyncSession, body: RolloutCreate, *, actor: str) -> RolloutView:
    if await repo.active_for_component(session, body.component) is not None:
        raise RolloutConflict(f"A rollout of {body.component} is already active: pause or abort it first.")
    tenants = await repo.active_tenants(session)
    current = await repo.component_versions(session, body.component, [t.id for t in tenants])
    eligible = [t for t in tenants if newer(body.version, current[t.id].version if t.id in current else None)]
    skipped = [t for t in tenants if t not in eligible]
    staging = [t for t in eligible if t.staging]
    fleet = [t for t in eligible if not t.staging]
    assignment: list[tuple[int, Any]] = []
    taken = 0
    for index, stage in enumerate(body.stages):
        if stage.staging:
            if not any(t.staging for t in tenants):
                raise RolloutConflict(
                    "No ACTIVE staging tenant: mark one with PATCH /api/v1/admin/tenants/{id} "
                    '{"staging": true}, or give stages without a staging stage.'
                )
            assignment += [(index, t) for t in staging]
            continue
        assert stage.percent is not None
        upto = min(len(fleet), max(math.ceil(len(fleet) * stage.percent / 100), taken + 1))
        assignment += [(index, t) for t in fleet[taken:upto]]
        taken = upto
    r = Rollout(
        id=uuid.uuid4(),
        component=body.component,
        agent_kind=commands.agent_for("update", {"component": body.component}).value,
        image=body.image,
        digest=body.digest,
        version=body.version,
        status=R.RUNNING,
        stages=[s.model_dump() for s in body.stages],
        stage_index=0,
        stage_started_at=datetime.now(UTC),
        concurrency=body.concurrency,
        rollback_on_abort=body.rollback_on_abort,
        min_healthy_seconds=body.min_healthy_seconds,
        deadline_seconds=body.deadline_seconds,
        created_by=actor,
    )
    session.add(r)
    for position, (stage, t) in enumerate(assignment):
        session.add(RolloutTarget(rollout_id=r.id, tenant_id=t.id, stage=stage, position=position, status=T.PENDING))
    for t in skipped:
        session.add(
            RolloutTarget(
                rollout_id=r.id,
                tenant_id=t.id,
                stage=NOT_IN_ANY_STAGE,
                position=0,
                status=T.SKIPPED,
                detail=f"already on {current[t.id].version}",
            )
        )
    await session.flush()
    sizes = {s.name: sum(1 for i, _ in assignment if i == n) for n, s in enumerate(body.stages)}
    await repo.add_event(
        session, r.id, "created", f"{body.component} → {body.version} ({body.digest})", {"stages": sizes}
    )
    log.info("rollout created", rollout_id=str(r.id), component=body.component, version=body.version, stages=sizes)
    return await view(session, r.id)


async def view(session: AsyncSession, rollout_id: uuid.UUID) -> RolloutView:
    r = await repo.get(session, rollout_id)
    if r is None:
        raise RolloutNotFound("No rollout with that id.")
    counts = await repo.counts(session, r.id)
    stages = _stages(r)
    stage_views = []
    for i, s in enumerate(stages):
        c = {st: n for (stage, st), n in counts.items() if stage == i}
        stage_views.append(StageView(index=i, name=s.name, spec=s.model_dump(), targets=sum(c.values()), counts=c))
    return RolloutView(
        id=r.id,
        component=r.component,
        agent=r.agent_kind,
        image=r.image,
        digest=r.digest,
        version=r.version,
        status=r.status,
        stage_index=r.stage_index,
        stage=stages[r.stage_index].name if r.stage_index < len(stages) else None,
        reason=r.reason,
        concurrency=r.concurrency,
        rollback_on_abort=r.rollback_on_abort,
        created_by=r.created_by,
        approved_by=r.approved_by,
        created_at=r.created_at,
        updated_at=r.updated_at,
        stage_started_at=r.stage_started_at,
        soak_started_at=r.soak_started_at,
        finished_at=r.finished_at,
        stages=stage_views,
        skipped=sum(n for (stage, _), n in counts.items() if stage == NOT_IN_ANY_STAGE),
    )


async def target_views(
    session: AsyncSession, rollout_id: uuid.UUID, *, stage: int | None, limit: int, cursor: str | None
) -> Page[TargetView]:
    if await repo.get(session, rollout_id) is None:
        raise RolloutNotFound("No rollout with that id.")
    rows, next_cursor = await repo.page_of_targets(session, rollout_id, stage=stage, limit=limit, cursor=cursor)
    return Page(items=[TargetView.model_validate(t, from_attributes=True) for t in rows], next_cursor=next_cursor)


# --- operator actions ------------------------------------------------------------------------------------------


async def _locked(session: AsyncSession, rollout_id: uuid.UUID) -> Rollout:
    r = await repo.get(session, rollout_id, lock=True)
    if r is None:
        raise RolloutNotFound("No rollout with that id.")
    return r


async def _move(session: AsyncSession, r: Rollout, to: R, reason: str | None = None, **values: Any) -> None:
    values |= {"updated_at": func.now()} | ({"finished_at": func.now()} if to in FINAL else {})
    await state.move(session, ROLLOUT, r, to, actor="rollout", reason=reason, **values)


async def _move_target(session: AsyncSession, t: RolloutTarget, to: T, **values: Any) -> None:
    await state.move(session, TARGET, t, to, actor="rollout", updated_at=func.now(), **values)


async def pause(session: AsyncSession, rollout_id: uuid.UUID, *, actor: str) -> RolloutView:
    r = await _locked(session, rollout_id)
    if r.status != R.RUNNING:
        raise RolloutConflict(f"A {r.status} rollout cannot be paused.")
    await _move(session, r, R.PAUSED, f"paused by {actor}")
    await repo.add_event(session, r.id, "paused", r.reason or "")
    return await view(session, r.id)


async def resume(session: AsyncSession, rollout_id: uuid.UUID, *, actor: str) -> RolloutView:
    """Running again; the current stage's inconclusive targets (no result) are tried once more."""
    r = await _locked(session, rollout_id)
    if r.status != R.PAUSED:
        raise RolloutConflict(f"A {r.status} rollout cannot be resumed.")
    retried = 0
    for t in await repo.targets(session, r.id, r.stage_index):
        if t.status in gates.INCONCLUSIVE:
            await _move_target(session, t, T.PENDING, command_id=None, detail="retry after resume")
            retried += 1
    await _move(session, r, R.RUNNING, soak_started_at=None)
    await repo.add_event(session, r.id, "resumed", f"resumed by {actor}", {"retried": retried})
    return await view(session, r.id)


async def approve(session: AsyncSession, rollout_id: uuid.UUID, *, actor: str) -> RolloutView:
    r = await _locked(session, rollout_id)
    if r.status != R.AWAITING_APPROVAL:
        raise RolloutConflict(f"A {r.status} rollout is not waiting for an approval.")
    await _move(session, r, R.RUNNING, approved_by=actor, stage_started_at=datetime.now(UTC))
    await repo.add_event(session, r.id, "approved", f"stage {_stages(r)[r.stage_index].name} approved by {actor}")
    return await view(session, r.id)


async def abort(session: AsyncSession, rollout_id: uuid.UUID, body: RolloutAbort, *, actor: str) -> RolloutView:
    r = await _locked(session, rollout_id)
    if r.status not in ACTIVE:
        raise RolloutConflict(f"A {r.status} rollout cannot be aborted.")
    await _abort(
        session,
        r,
        f"{body.reason} ({actor})",
        rollback=body.rollback if body.rollback is not None else r.rollback_on_abort,
    )
    return await view(session, r.id)


async def _abort(session: AsyncSession, r: Rollout, reason: str, *, rollback: bool) -> None:
    """Cancel what has not started, optionally roll the current stage's updated tenants back, stop."""
    cancelled = 0
    for c in await open_for_rollout(session, r.id):
        if await commands.transition(
            session, c, CommandStatus.CANCELLED, actor="rollout", reason=reason, finished_at=datetime.now(UTC)
        ):
            cancelled += 1
    reverted = 0
    for t in await repo.targets(session, r.id):
        if t.status in (T.PENDING, T.DISPATCHED) and t.stage >= 0:
            await _move_target(session, t, T.CANCELLED, detail=reason[:500])
        elif rollback and t.stage == r.stage_index and t.status == T.SUCCEEDED and not t.previous_digest:
            await repo.set_target(session, r.id, t.tenant_id, detail="not reverted: its previous digest is unknown")
        elif rollback and t.stage == r.stage_index and t.status == T.SUCCEEDED:
            cmd, _ = await commands.enqueue(
                session,
                tenant_id=t.tenant_id,
                command_type="update",
                params={
                    "component": r.component,
                    "image": r.image,
                    "digest": t.previous_digest,
                    "version": t.previous_version or "0",
                    "min_healthy_seconds": r.min_healthy_seconds,
                    "deadline_seconds": r.deadline_seconds,
                },
                actor="rollout",
                idempotency_key=f"rollout:{r.id}:revert:{t.tenant_id}",
                deadline_seconds=int(r.deadline_seconds) + 120,
                rollout_id=None,  # a revert is not part of the rollout's own accounting
            )
            await _move_target(session, t, T.REVERTED, detail=f"revert command {cmd.id}")
            reverted += 1
    await _move(session, r, R.ABORTED, reason)
    await repo.add_event(session, r.id, "aborted", reason, {"cancelled_commands": cancelled, "reverted": reverted})
    log.warning("rollout aborted", rollout_id=str(r.id), reason=reason, cancelled=cancelled, reverted=reverted)


# --- the engine's step -----------------------------------------------------------------------------------------


def _target_status(c: Any) -> tuple[T, str | None] | None:
    """What a finished command means for its target; None while it is not finished."""
    if c.status == CommandStatus.SUCCEEDED:
        return T.SUCCEEDED, None
    if c.status == CommandStatus.FAILED:
        return (T.ROLLBACK_FAILED if (c.result or {}).get("rollback_failed") else T.FAILED), c.error
    if c.status in (CommandStatus.ROLLED_BACK, CommandStatus.TIMED_OUT, CommandStatus.CANCELLED):
        return T(c.status), c.error
    return None


async def tick(session: AsyncSession, rollout_id: uuid.UUID, *, heartbeat_interval: float) -> None:
    """Record the results of finished updates, then apply what the first gate that decides says (gates.RULES)."""
    r = await repo.get(session, rollout_id, lock=True, skip_locked=True)
    if r is None or r.status not in (R.RUNNING, R.PAUSED):
        return  # another replica has it, or nothing to do (AWAITING_APPROVAL waits for a person)
    stages = _stages(r)
    targets = await repo.targets(session, r.id, r.stage_index)
    await _collect_results(session, r, targets)
    # the updated component itself if it is an agent, else the Safety Wrapper that watches the tenant
    watcher = r.component if r.component in ("safety-wrapper", "secrets-proxy") else "safety-wrapper"
    now = datetime.now(UTC)
    action = await gates.decide(
        gates.Tick(
            status=R(r.status),
            stage=stages[r.stage_index],
            targets=targets,
            concurrency=r.concurrency,
            soak_started_at=r.soak_started_at,
            now=now,
            heartbeat_interval=heartbeat_interval,
            last_seen=lambda tenants: repo.last_heartbeats(session, tenants, watcher),
        )
    )
    match action:
        case gates.Abort(reason):
            await _abort(session, r, reason, rollback=r.rollback_on_abort)
        case gates.Pause(reason, data):
            await _move(session, r, R.PAUSED, reason)
            await repo.add_event(session, r.id, "paused", reason, data)
        case gates.Dispatch(batch):
            await _send_update_commands(session, r, batch)
        case gates.StartSoak(message):
            r.soak_started_at = now
            await repo.add_event(session, r.id, "soaking", message)
        case gates.Promote():
            await _promote(session, r, stages, now)


async def _collect_results(session: AsyncSession, r: Rollout, targets: list[RolloutTarget]) -> None:
    dispatched = [t for t in targets if t.status == T.DISPATCHED and t.command_id]
    cmds = await repo.commands_by_id(session, [t.command_id for t in dispatched if t.command_id])
    for t in dispatched:
        outcome = _target_status(cmds[t.command_id]) if t.command_id in cmds else None
        if outcome is not None:
            await _move_target(session, t, outcome[0], detail=(outcome[1] or None) and outcome[1][:1000])
            await repo.add_event(
                session,
                r.id,
                "target",
                f"{t.tenant_id}: {t.status}",
                {"tenant_id": str(t.tenant_id), "status": t.status},
            )


async def _send_update_commands(session: AsyncSession, r: Rollout, batch: list[RolloutTarget]) -> None:
    current = await repo.component_versions(session, r.component, [t.tenant_id for t in batch])
    for t in batch:
        have = current.get(t.tenant_id)
        if have is not None and not newer(r.version, have.version):
            await _move_target(session, t, T.SKIPPED, detail=f"already on {have.version}")
            continue
        attempt = "" if t.detail != "retry after resume" else f":{uuid.uuid4().hex[:8]}"
        cmd, _ = await commands.enqueue(
            session,
            tenant_id=t.tenant_id,
            command_type="update",
            params={
                "component": r.component,
                "image": r.image,
                "digest": r.digest,
                "version": r.version,
                "min_healthy_seconds": r.min_healthy_seconds,
                "deadline_seconds": r.deadline_seconds,
            },
            actor="rollout",
            idempotency_key=f"rollout:{r.id}:{t.tenant_id}{attempt}",
            deadline_seconds=int(r.deadline_seconds) + 120,
            rollout_id=r.id,
        )
        await _move_target(
            session,
            t,
            T.DISPATCHED,
            command_id=cmd.id,
            previous_digest=have.digest if have else None,
            previous_version=have.version if have else None,
            detail=None,
        )


async def _promote(session: AsyncSession, r: Rollout, stages: list[StageSpec], now: datetime) -> None:
    done = stages[r.stage_index].name
    r.stage_index += 1
    r.soak_started_at = None
    r.stage_started_at = now
    while r.stage_index < len(stages) and not await repo.targets(session, r.id, r.stage_index):
        r.stage_index += 1  # an empty stage (small fleet): nothing to do there
    if r.stage_index >= len(stages):
        r.stage_index = len(stages) - 1
        await _move(session, r, R.COMPLETED, None)
        await repo.add_event(session, r.id, "completed", f"stage {done} passed; rollout complete")
        log.info("rollout completed", rollout_id=str(r.id))
        return
    nxt = stages[r.stage_index]
    if nxt.requires_approval:
        await _move(
            session, r, R.AWAITING_APPROVAL, f"stage {done} passed; stage {nxt.name} needs an operator's approval"
        )
        await repo.add_event(session, r.id, "awaiting-approval", r.reason or "")
        return
    r.updated_at = now
    await repo.add_event(session, r.id, "promoted", f"stage {done} passed; starting {nxt.name}")
