"""The order state machine: one transition table, one function that applies it. Nothing else writes ``status``.

``transition`` is a compare-and-set (``UPDATE … WHERE id = :id AND status = :expected RETURNING``), so two
workers can never both advance the same order; it records the transition in ``order_transitions``, stages an
``order-status-changed`` event in the outbox and wakes the order's SSE listeners — all in the caller's
transaction, so either everything happens or nothing does.
"""

from __future__ import annotations

import uuid
import weakref
from typing import Any

from prometheus_client import Counter
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import SessionTransaction

from letsbe_contracts.enums import FailureStage
from letsbe_contracts.enums import OrderStatus as S
from letsbe_contracts.events import OrderStatusChangedV1
from letsbe_hub.db import outbox
from letsbe_hub.orders.models import Order, OrderTransition
from letsbe_platform.errors import Conflict, NotFound
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


class IllegalTransition(Conflict):
    type, title = "illegal-transition", "Illegal order transition"


def allowed(from_status: S, to_status: S) -> bool:
    return to_status in TRANSITIONS[from_status]


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


async def _record(
    session: AsyncSession,
    order_id: uuid.UUID,
    from_status: S | None,
    to_status: S,
    actor: str,
    reason: str | None,
    stage: FailureStage | None,
) -> None:
    await session.execute(
        insert(OrderTransition).values(
            order_id=order_id,
            from_status=from_status,
            to_status=to_status,
            actor=actor,
            reason=reason,
            failed_stage=stage,
        )
    )
    await add_event(
        session,
        outbox,
        OrderStatusChangedV1(
            order_id=order_id,
            from_status=from_status,
            to_status=to_status,
            actor=actor,
            reason=reason[:4000] if reason else None,
            failed_stage=stage,
        ),
        correlation_id=order_id,
    )
    await notify_stream(session, order_id)
    ORDER_TRANSITIONS.labels(from_status or "NEW", to_status).inc()


async def record_creation(session: AsyncSession, order: Order, *, actor: str) -> Order:
    """Insert a new order in its first state (PENDING_PAYMENT) with its first history row."""
    order.status = S.PENDING_PAYMENT
    session.add(order)
    await session.flush()
    await lock_stream(session, order.id)
    await _record(session, order.id, None, S.PENDING_PAYMENT, actor, "order created", None)
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
    if "status" in fields or any(f in fields for f in _FAILURE_FIELDS):
        raise ValueError("status and failure fields are set by transition() itself")
    if (to_status is S.FAILED) != (stage is not None):
        raise ValueError("a stage is given exactly when moving to FAILED")
    await lock_stream(session, order_id)
    current = (await session.execute(select(Order.status).where(Order.id == order_id))).scalar_one_or_none()
    if current is None:
        raise NotFound("No order with that id.", order_id=str(order_id))
    from_status = S(expected or current)
    if not allowed(from_status, to_status) or S(current) != from_status:
        raise IllegalTransition(
            f"An order in {current} cannot move to {to_status}.",
            order_id=str(order_id),
            current_status=str(current),
            requested_status=str(to_status),
            allowed=sorted(TRANSITIONS[S(current)]),
        )
    values: dict[str, Any] = {"status": to_status, "updated_at": func.now(), **fields}
    if to_status is S.FAILED:
        values.update(failed_stage=stage, failure_reason=reason, failure_retryable=retryable)
    else:
        values.update(dict.fromkeys(_FAILURE_FIELDS))
    row = (
        await session.execute(
            update(Order)
            .where(Order.id == order_id, Order.status == from_status)
            .values(**values)
            .returning(Order)
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()
    if row is None:  # someone moved it between our read and our write: nothing changed, say so
        raise IllegalTransition(
            f"The order changed concurrently; it is no longer in {from_status}.",
            order_id=str(order_id),
            requested_status=str(to_status),
        )
    await _record(session, order_id, from_status, to_status, actor, reason, stage)
    return row
