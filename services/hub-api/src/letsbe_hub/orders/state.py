"""The order state machine: one transition table, one function that applies it. Nothing else writes ``status``.

``transition`` applies ``MACHINE`` through ``letsbe_platform.state`` (a compare-and-set, so two workers can never
both advance the same order); its history is ``order_transitions``, and each move stages an
``order-status-changed`` event in the outbox and wakes the order's SSE listeners — all in the caller's
transaction, so either everything happens or nothing does.
"""

from __future__ import annotations

import uuid
import weakref
from typing import Any

from prometheus_client import Counter
from sqlalchemy import func, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import SessionTransaction

from letsbe_contracts.enums import FailureStage
from letsbe_contracts.enums import OrderStatus as S
from letsbe_contracts.events import OrderStatusChangedV1
from letsbe_hub.db import outbox
from letsbe_hub.orders.models import Order, OrderTransition
from letsbe_platform import state
from letsbe_platform.outbox import add_event

# The happy path, in order. Each active state may also fail or be cancelled.
HAPPY_PATH: tuple[S, ...] = (
    S.PENDING_PAYMENT,
    S.PAYMENT_CONFIRMED,
    S.AWAITING_SERVER,
    S.SERVER_READY,
    S.DNS_PENDING,
    S.DNS_READY,
    S.PROVISIONING,
    S.FULFILLED,
)
ACTIVE: frozenset[S] = frozenset(HAPPY_PATH[:-1])
FINAL: frozenset[S] = frozenset({S.FULFILLED, S.CANCELLED})

# Which stage an active order is in: a failure reported for an earlier stage is stale and ignored.
STAGE_OF: dict[S, FailureStage] = {
    S.PENDING_PAYMENT: FailureStage.PAYMENT,
    S.PAYMENT_CONFIRMED: FailureStage.ALLOCATION,
    S.AWAITING_SERVER: FailureStage.ALLOCATION,
    S.SERVER_READY: FailureStage.DNS,
    S.DNS_PENDING: FailureStage.DNS,
    S.DNS_READY: FailureStage.PROVISIONING,
    S.PROVISIONING: FailureStage.PROVISIONING,
}
STAGE_RANK: dict[FailureStage, int] = {s: i for i, s in enumerate(FailureStage)}

# A retry resumes at the state that waits for the failed stage's outcome (the service re-emits the event
# that starts the stage): ALLOCATION waits for server-allocated, DNS for dns-ready, PROVISIONING for provisioned.
RETRY_TARGET: dict[FailureStage, S] = {
    FailureStage.PAYMENT: S.PENDING_PAYMENT,
    FailureStage.ALLOCATION: S.AWAITING_SERVER,
    FailureStage.DNS: S.DNS_PENDING,
    FailureStage.PROVISIONING: S.PROVISIONING,
}

TRANSITIONS: dict[S, frozenset[S]] = {
    **{state: frozenset({HAPPY_PATH[i + 1], S.FAILED, S.CANCELLED}) for i, state in enumerate(HAPPY_PATH[:-1])},
    S.FAILED: frozenset({*RETRY_TARGET.values(), S.CANCELLED}),
    S.FULFILLED: frozenset(),
    S.CANCELLED: frozenset(),
}

STREAM_CHANNEL = "hub_order_stream"  # NOTIFY payload: the order id; SSE streams re-read the database on it

ORDER_TRANSITIONS = Counter("hub_order_transitions_total", "Order state-machine transitions", ["from_status", "to"])

_FAILURE_FIELDS = ("failed_stage", "failure_reason", "failure_retryable")


class IllegalTransition(state.IllegalTransition):
    type, title = "illegal-transition", "Illegal order transition"


# What this transaction already did per order (lock taken, listeners notified): once per transaction is enough.
_DONE: weakref.WeakKeyDictionary[SessionTransaction, set[tuple[str, uuid.UUID]]] = weakref.WeakKeyDictionary()


def _first_time(session: AsyncSession, what: str, order_id: uuid.UUID) -> bool:
    tx = session.sync_session.get_transaction()
    if tx is None:
        return True
    done = _DONE.setdefault(tx, set())
    if (what, order_id) in done:
        return False
    done.add((what, order_id))
    return True


async def lock_stream(session: AsyncSession, order_id: uuid.UUID) -> None:
    """Serialise writers of one order's stream rows until this transaction ends (see orders.models)."""
    if _first_time(session, "lock", order_id):
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": f"order-stream:{order_id}"}
        )


async def notify_stream(session: AsyncSession, order_id: uuid.UUID) -> None:
    """Delivered at commit (and only then) to every hub replica's stream listener."""
    if _first_time(session, "notify", order_id):
        await session.execute(text("SELECT pg_notify(:ch, :id)"), {"ch": STREAM_CHANNEL, "id": str(order_id)})


async def _on_change(session: AsyncSession, change: state.Change) -> None:
    order_id, stage = change.row.id, change.extra.get("failed_stage")
    await add_event(
        session,
        outbox,
        OrderStatusChangedV1(
            order_id=order_id,
            from_status=change.from_status,
            to_status=change.to_status,
            actor=change.actor,
            reason=change.reason[:4000] if change.reason else None,
            failed_stage=stage,
        ),
        correlation_id=order_id,
    )
    await notify_stream(session, order_id)
    ORDER_TRANSITIONS.labels(change.from_status or "NEW", change.to_status).inc()


MACHINE = state.Machine(
    noun="order",
    model=Order,
    transitions=TRANSITIONS,
    history=OrderTransition,
    history_key="order_id",
    on_change=_on_change,
    conflict=IllegalTransition,
    id_field="order_id",
)


async def record_creation(session: AsyncSession, order: Order, *, actor: str) -> Order:
    """Insert a new order (built in its first state, PENDING_PAYMENT) with its first history row."""
    if order.status != HAPPY_PATH[0]:
        raise ValueError("a new order starts in PENDING_PAYMENT")
    session.add(order)
    await session.flush()
    await lock_stream(session, order.id)
    await state.created(session, MACHINE, order, actor=actor, reason="order created", failed_stage=None)
    return order


async def transition(
    session: AsyncSession,
    order_id: uuid.UUID,
    to_status: S,
    *,
    actor: str,
    reason: str | None = None,
    expected: S | None = None,
    stage: FailureStage | None = None,
    retryable: bool | None = None,
    **fields: Any,
) -> Order:
    """Move the order to ``to_status`` if the table allows it from its current (or ``expected``) state.

    Raises :class:`IllegalTransition` (409) and changes nothing otherwise. ``fields`` are other order columns to
    set in the same UPDATE (e.g. the server target that came with the event causing the transition).
    """
    if any(f in fields for f in _FAILURE_FIELDS):
        raise ValueError("failure fields are set by transition() itself")
    if (to_status is S.FAILED) != (stage is not None):
        raise ValueError("a stage is given exactly when moving to FAILED")
    await lock_stream(session, order_id)
    values: dict[str, Any] = {"updated_at": func.now(), **fields}
    if to_status is S.FAILED:
        values.update(failed_stage=stage, failure_reason=reason, failure_retryable=retryable)
    else:
        values.update(dict.fromkeys(_FAILURE_FIELDS))
    return await state.transition(
        session,
        MACHINE,
        order_id,
        expected,
        to_status,
        actor=actor,
        reason=reason,
        history={"failed_stage": stage},
        **values,
    )
