"""Each rollout gate alone: what it proposes for a stage in a given state, and that it stays silent otherwise."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from letsbe_hub.rollouts import gates
from letsbe_hub.rollouts.models import RolloutStatus, RolloutTarget
from letsbe_hub.rollouts.models import TargetStatus as T
from letsbe_hub.rollouts.schemas import StageSpec

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
STAGE = StageSpec(name="wide", percent=50, max_failure_ratio=0.25, soak_seconds=60)


def tick(*statuses: T, status=RolloutStatus.RUNNING, concurrency=2, soak_started_at=None, seen=None) -> gates.Tick:
    targets = [RolloutTarget(tenant_id=uuid.uuid4(), status=s) for s in statuses]

    async def last_seen(tenants):
        return {t: NOW - timedelta(seconds=s) for t, s in zip(tenants, seen or [], strict=False)}

    return gates.Tick(status, STAGE, targets, concurrency, soak_started_at, NOW, 10.0, last_seen)


SOAKED = NOW - timedelta(seconds=61)
CASES = [
    # rule, tick, what it proposes (None: it lets the next rule decide)
    (gates.failed_rollback, tick(T.SUCCEEDED, T.ROLLBACK_FAILED), gates.Abort),
    (gates.failed_rollback, tick(T.SUCCEEDED, T.FAILED), None),
    (gates.too_many_failures, tick(T.FAILED, T.ROLLED_BACK, T.SUCCEEDED, T.PENDING), gates.Abort),  # 2/4 > 25 %
    (gates.too_many_failures, tick(T.FAILED, T.SUCCEEDED, T.SUCCEEDED, T.PENDING), None),  # 1/4: at the limit
    (gates.too_many_failures, tick(), None),  # an empty stage never fails
    (gates.paused, tick(T.PENDING, status=RolloutStatus.PAUSED), gates.Wait),
    (gates.paused, tick(T.PENDING), None),
    (gates.dispatch, tick(T.DISPATCHED, T.PENDING, T.PENDING), gates.Dispatch),
    (gates.dispatch, tick(T.DISPATCHED, T.DISPATCHED, T.PENDING), None),  # the concurrency bound is reached
    (gates.stage_busy, tick(T.DISPATCHED, T.SUCCEEDED), gates.Wait),
    (gates.stage_busy, tick(T.SUCCEEDED, T.SKIPPED), None),
    (gates.inconclusive, tick(T.SUCCEEDED, T.TIMED_OUT), gates.Pause),
    (gates.inconclusive, tick(T.SUCCEEDED, T.TIMED_OUT, soak_started_at=SOAKED), None),  # judged before the soak
    (gates.start_soak, tick(T.SUCCEEDED), gates.StartSoak),
    (gates.start_soak, tick(T.SUCCEEDED, soak_started_at=NOW), None),
    (gates.soaking, tick(T.SUCCEEDED, soak_started_at=NOW - timedelta(seconds=59)), gates.Wait),
    (gates.soaking, tick(T.SUCCEEDED, soak_started_at=SOAKED), None),
    (gates.silent_after_soak, tick(T.SUCCEEDED, T.SUCCEEDED, seen=[5, 31]), gates.Pause),  # 31 s > 3 beats of 10 s
    (gates.silent_after_soak, tick(T.SUCCEEDED, T.SUCCEEDED, seen=[5]), gates.Pause),  # never heard from
    (gates.silent_after_soak, tick(T.SUCCEEDED, T.FAILED, seen=[29]), None),
    (gates.promote, tick(T.SUCCEEDED), gates.Promote),
]


@pytest.mark.parametrize(
    ("rule", "state", "proposes"), CASES, ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(CASES)]
)
async def test_each_gate_alone(rule, state, proposes):
    action = await rule(state)
    assert type(action) is proposes if proposes else action is None


async def test_dispatch_sends_only_up_to_the_concurrency_bound():
    action = await gates.dispatch(tick(T.DISPATCHED, T.PENDING, T.PENDING, T.PENDING, concurrency=3))
    assert isinstance(action, gates.Dispatch) and len(action.batch) == 2


async def test_the_failure_limits_apply_before_a_pause_and_mid_stage():
    action = await gates.decide(tick(T.ROLLBACK_FAILED, T.PENDING, T.DISPATCHED, status=RolloutStatus.PAUSED))
    assert isinstance(action, gates.Abort) and "rollback failed" in action.reason
