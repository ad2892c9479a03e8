"""The rollout engine's gates: an ordered list of rules, each small enough to test alone.

Every tick, after the results of finished update commands are recorded, the rules are asked in order; the first
that proposes an action decides the tick (the service applies it), as Prefect's orchestration policies do. The
hard failure limits come first, so they apply at once and not only at the end of a stage.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from letsbe_hub.rollouts.models import RolloutStatus, RolloutTarget
from letsbe_hub.rollouts.models import TargetStatus as T
from letsbe_hub.rollouts.schemas import StageSpec

FAILURES = {T.FAILED, T.ROLLED_BACK, T.ROLLBACK_FAILED}
INCONCLUSIVE = {T.TIMED_OUT, T.CANCELLED}
# Liveness during the soak: a target whose agent has not been heard from for this many intervals is suspect.
MISSED_BEATS = 3


@dataclass(frozen=True)
class Abort:
    reason: str


@dataclass(frozen=True)
class Pause:
    reason: str
    data: dict[str, Any] | None = None


@dataclass(frozen=True)
class Dispatch:
    batch: list[RolloutTarget]


@dataclass(frozen=True)
class Wait:
    pass


@dataclass(frozen=True)
class StartSoak:
    message: str


@dataclass(frozen=True)
class Promote:
    pass


Action = Abort | Pause | Dispatch | Wait | StartSoak | Promote


@dataclass
class Tick:
    """What the rules see of one rollout's current stage."""

    status: RolloutStatus
    stage: StageSpec
    targets: Sequence[RolloutTarget]
    concurrency: int
    soak_started_at: datetime | None
    now: datetime
    heartbeat_interval: float
    # when each of these tenants' watching agent last heartbeated (asked only once a soak is over)
    last_seen: Callable[[list[uuid.UUID]], Awaitable[dict[uuid.UUID, datetime]]] = field(repr=False)

    def having(self, *statuses: T) -> list[RolloutTarget]:
        return [t for t in self.targets if t.status in statuses]


async def failed_rollback(t: Tick) -> Action | None:
    if t.having(T.ROLLBACK_FAILED):
        return Abort(f"stage {t.stage.name}: a rollback failed on a tenant")
    return None


async def too_many_failures(t: Tick) -> Action | None:
    failed, size = len(t.having(*FAILURES)), len(t.targets)
    if size and failed / size > t.stage.max_failure_ratio:
        limit = t.stage.max_failure_ratio
        return Abort(f"stage {t.stage.name}: {failed} of {size} updates failed (limit {limit:.0%})")
    return None


async def paused(t: Tick) -> Action | None:
    return Wait() if t.status == RolloutStatus.PAUSED else None


async def dispatch(t: Tick) -> Action | None:
    """At most ``concurrency`` updates in flight."""
    in_flight, pending = len(t.having(T.DISPATCHED)), t.having(T.PENDING)
    if pending and in_flight < t.concurrency:
        return Dispatch(pending[: t.concurrency - in_flight])
    return None


async def stage_busy(t: Tick) -> Action | None:
    return Wait() if t.having(T.PENDING, T.DISPATCHED) else None


async def inconclusive(t: Tick) -> Action | None:
    """Results that never came pause the rollout before its soak: an operator decides."""
    unknown = t.having(*INCONCLUSIVE)
    if t.soak_started_at is None and unknown:
        n = len(t.targets)
        return Pause(f"stage {t.stage.name}: {len(unknown)} of {n} tenants gave no result (inconclusive)")
    return None


async def start_soak(t: Tick) -> Action | None:
    if t.soak_started_at is None:
        return StartSoak(f"stage {t.stage.name} passed; soaking {t.stage.soak_seconds}s")
    return None


async def soaking(t: Tick) -> Action | None:
    assert t.soak_started_at is not None
    return Wait() if t.now - t.soak_started_at < timedelta(seconds=t.stage.soak_seconds) else None


async def silent_after_soak(t: Tick) -> Action | None:
    """Every updated tenant must still heartbeat at the end of the soak."""
    updated = [x.tenant_id for x in t.having(T.SUCCEEDED)]
    seen = await t.last_seen(updated)
    quiet = timedelta(seconds=MISSED_BEATS * t.heartbeat_interval)
    silent = [tid for tid in updated if seen.get(tid) is None or t.now - seen[tid] > quiet]
    if silent:
        return Pause(
            f"stage {t.stage.name}: {len(silent)} updated tenants stopped heartbeating during the soak",
            {"silent": [str(s) for s in silent]},
        )
    return None


async def promote(t: Tick) -> Action | None:
    return Promote()


RULES: tuple[Callable[[Tick], Awaitable[Action | None]], ...] = (
    failed_rollback,
    too_many_failures,
    paused,
    dispatch,
    stage_busy,
    inconclusive,
    start_soak,
    soaking,
    silent_after_soak,
    promote,
)


async def decide(t: Tick) -> Action:
    for rule in RULES:
        action = await rule(t)
        if action is not None:
            return action
    raise AssertionError("promote always decides")
