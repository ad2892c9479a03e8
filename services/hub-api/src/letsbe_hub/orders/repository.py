"""SQL of the orders context. Status changes go through orders.state, never through here."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, literal, or_, select, text, union_all, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts import OrderStatus
from letsbe_hub.orders.models import Order, OrderTransition, ProvisioningProgress
from letsbe_platform.pagination import Keyset


async def get(session: AsyncSession, order_id: uuid.UUID) -> Order | None:
    return await session.get(Order, order_id, populate_existing=True)


async def live_order_for_domain(session: AsyncSession, domain: str) -> uuid.UUID | None:
    stmt = select(Order.id).where(Order.domain == domain, Order.status != OrderStatus.CANCELLED)
    return (await session.execute(stmt)).scalar_one_or_none()


async def find_for_payment(
    session: AsyncSession,
    *,
    order_id: uuid.UUID | None = None,
    checkout_session_id: str | None = None,
    payment_intent_id: str | None = None,
) -> Order | None:
    """The order a Stripe object refers to: by our own id in its metadata first, then by Stripe ids we stored."""
    for column, value in (
        (Order.id, order_id),
        (Order.checkout_session_id, checkout_session_id),
        (Order.payment_intent_id, payment_intent_id),
    ):
        if value is not None:
            row = (
                await session.execute(select(Order).where(column == value).execution_options(populate_existing=True))
            ).scalar_one_or_none()
            if row is not None:
                return row
    return None


async def set_fields(session: AsyncSession, order_id: uuid.UUID, **values: Any) -> None:
    """Non-status columns (payment details, attention flag, what the events told us)."""
    if "status" in values:
        raise ValueError("status is written by orders.state.transition only")
    await session.execute(update(Order).where(Order.id == order_id).values(updated_at=func.now(), **values))


async def history(session: AsyncSession, order_id: uuid.UUID) -> Sequence[OrderTransition]:
    stmt = select(OrderTransition).where(OrderTransition.order_id == order_id).order_by(OrderTransition.id)
    return (await session.execute(stmt)).scalars().all()


# --- listing with a keyset cursor ------------------------------------------------------------------------------

KEYSET = Keyset("orders", Order.created_at, Order.id)  # newest first


@dataclass(frozen=True)
class OrderFilters:
    status: Sequence[str] = ()
    tier: str | None = None
    region: str | None = None
    automation_mode: str | None = None
    domain: str | None = None
    domain_suffix: str | None = None
    customer_email: str | None = None
    attention: bool | None = None


async def list_orders(
    session: AsyncSession, filters: OrderFilters, *, limit: int, cursor: str | None
) -> tuple[list[Order], str | None]:
    """Newest first; the cursor is the (created_at, id) of the last row, so pages are stable under inserts."""
    stmt = select(Order)
    if filters.status:
        stmt = stmt.where(Order.status.in_(filters.status))
    for column, value in (
        (Order.tier, filters.tier),
        (Order.region, filters.region),
        (Order.automation_mode, filters.automation_mode),
        (Order.domain, filters.domain),
        (func.lower(Order.customer_email), filters.customer_email.lower() if filters.customer_email else None),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if filters.domain_suffix is not None:
        suffix = filters.domain_suffix
        stmt = stmt.where(or_(Order.domain == suffix, Order.domain.endswith("." + suffix, autoescape=True)))
    if filters.attention is not None:
        stmt = stmt.where(Order.attention.is_not(None) if filters.attention else Order.attention.is_(None))
    return await KEYSET.fetch(session, stmt, limit=limit, cursor=cursor)


# --- provisioning progress and the stream --------------------------------------------------------------------


async def insert_progress(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    job_id: uuid.UUID,
    kind: str,
    step: int,
    dedup_key: str,
    payload: dict[str, Any],
    at: datetime,
) -> int | None:
    """The new row's id, or None when this report was stored before."""
    stmt = (
        insert(ProvisioningProgress)
        .values(order_id=order_id, job_id=job_id, kind=kind, step=step, dedup_key=dedup_key, payload=payload, at=at)
        .on_conflict_do_nothing(index_elements=["dedup_key"])
        .returning(ProvisioningProgress.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


@dataclass(frozen=True)
class StreamRow:
    id: int
    kind: str  # "status" | "step" | "log"
    at: datetime
    data: dict[str, Any]


async def stream_rows(session: AsyncSession, order_id: uuid.UUID, after_id: int, limit: int) -> list[StreamRow]:
    """The order's transitions and provisioning reports after ``after_id``, in stream (= id) order."""
    t = OrderTransition
    p = ProvisioningProgress
    transitions = select(
        t.id.label("id"),
        literal("status").label("kind"),
        t.at.label("at"),
        func.jsonb_build_object(
            text("'from'"),
            t.from_status,
            text("'to'"),
            t.to_status,
            text("'actor'"),
            t.actor,
            text("'reason'"),
            t.reason,
            text("'failed_stage'"),
            t.failed_stage,
        ).label("data"),
    ).where(t.order_id == order_id, t.id > after_id)
    progress = select(
        p.id, p.kind, p.at, p.payload.op("||")(func.jsonb_build_object(text("'job_id'"), p.job_id))
    ).where(p.order_id == order_id, p.id > after_id)
    stmt = union_all(transitions, progress).order_by(text("id")).limit(limit)
    rows = (await session.execute(stmt)).all()
    return [StreamRow(id=r[0], kind=r[1], at=r[2], data=dict(r[3])) for r in rows]


async def status_of(session: AsyncSession, order_id: uuid.UUID) -> str | None:
    return (await session.execute(select(Order.status).where(Order.id == order_id))).scalar_one_or_none()
