"""Admin orders API: create, list, get (with history), cancel, retry, release, checkout, live events (SSE)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status
from sse_starlette import EventSourceResponse

from letsbe_contracts.enums import AutomationMode, OrderStatus, Region, Tier
from letsbe_contracts.events import DomainName, DomainSuffix
from letsbe_hub.auth.dependencies import Authorized
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.notifications import service as notifications
from letsbe_hub.orders import repository as repo
from letsbe_hub.orders import service
from letsbe_hub.orders.models import Order
from letsbe_hub.orders.schemas import (
    CheckoutOut,
    OrderCancel,
    OrderCreate,
    OrderDetail,
    OrderOut,
    OrderRetry,
    TransitionOut,
    WelcomeEmailOut,
)
from letsbe_hub.orders.stream import order_events
from letsbe_hub.orders.wiring import OrdersRuntimeDep
from letsbe_platform.errors import NotFound
from letsbe_platform.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from letsbe_platform.web import After, LastEventId, SessionDep, problems, sse_cursor

router = APIRouter(prefix="/api/v1/admin/orders", tags=["orders"])

OrderRead = Authorized(Scope.ORDERS_READ)
OrderWrite = Authorized(Scope.ORDERS_WRITE)


async def _detail(session: SessionDep, order: Order) -> OrderDetail:
    history = await repo.history(session, order.id)
    mail = await notifications.status(session, order.id)
    return OrderDetail(
        **OrderOut.model_validate(order).model_dump(),
        history=[TransitionOut.model_validate(t) for t in history],
        welcome_email=WelcomeEmailOut.model_validate(mail, from_attributes=True) if mail else None,
    )


@router.post(
    "",
    name="create",
    status_code=status.HTTP_201_CREATED,
    responses=problems(502),  # Stripe refused the checkout session
    summary="Create an order (PENDING_PAYMENT)")
async def create(body: OrderCreate, session: SessionDep, rt: OrdersRuntimeDep, principal: OrderWrite) -> OrderDetail:
    order = await service.create_order(
        session, body, actor=f"operator:{principal.name}", gateway=rt.gateway, settings=rt.settings
    )
    return await _detail(session, order)


@router.get("", name="list", summary="List orders, newest first, with filters and a cursor")
async def list_orders(
    session: SessionDep,
    _: OrderRead,
    status_: Annotated[list[OrderStatus] | None, Query(alias="status", description="Any of these; repeat")] = None,
    tier: Tier | None = None,
    region: Region | None = None,
    automation_mode: AutomationMode | None = None,
    domain: Annotated[DomainName | None, Query(description="Exactly this domain")] = None,
    domain_suffix: Annotated[
        DomainSuffix | None, Query(description="This domain and its subdomains (e.g. example.com)")
    ] = None,
    customer_email: Annotated[str | None, Query(max_length=320)] = None,
    attention: Annotated[bool | None, Query(description="Only orders flagged (true) or not flagged (false)")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[OrderOut]:
    filters = repo.OrderFilters(
        status=[s.value for s in status_ or ()],
        tier=tier,
        region=region,
        automation_mode=automation_mode,
        domain=domain,
        domain_suffix=domain_suffix,
        customer_email=customer_email,
        attention=attention,
    )
    rows, next_cursor = await repo.list_orders(session, filters, limit=limit, cursor=cursor)
    return Page(items=[OrderOut.model_validate(o) for o in rows], next_cursor=next_cursor)


@router.get("/{order_id}", name="get", summary="One order with its full transition history")
async def get(order_id: uuid.UUID, session: SessionDep, _: OrderRead) -> OrderDetail:
    order = await repo.get(session, order_id)
    if order is None:
        raise NotFound("No order with that id.", order_id=str(order_id))
    return await _detail(session, order)


@router.post("/{order_id}/cancel", name="cancel", summary="Cancel an order that is not fulfilled")
async def cancel(
    order_id: uuid.UUID, session: SessionDep, principal: OrderWrite, body: OrderCancel | None = None
) -> OrderDetail:
    body = body or OrderCancel()
    order = await service.cancel(session, order_id, actor=f"operator:{principal.name}", reason=body.reason)
    return await _detail(session, order)


@router.post("/{order_id}/retry", name="retry", summary="Resume a FAILED order at its failed stage")
async def retry(
    order_id: uuid.UUID, session: SessionDep, principal: OrderWrite, body: OrderRetry | None = None
) -> OrderDetail:
    body = body or OrderRetry()
    order = await service.retry(
        session, order_id, actor=f"operator:{principal.name}", force=body.force, note=body.reason
    )
    return await _detail(session, order)


@router.post("/{order_id}/release", name="release", summary="Let a paid MANUAL order into automation")
async def release(order_id: uuid.UUID, session: SessionDep, principal: OrderWrite) -> OrderDetail:
    order = await service.release(session, order_id, actor=f"operator:{principal.name}")
    return await _detail(session, order)


@router.post(
    "/{order_id}/checkout",
    name="checkout",
    status_code=status.HTTP_201_CREATED,
    responses=problems(502),
    summary="A new Stripe Checkout Session for an unpaid order",
)
async def checkout(order_id: uuid.UUID, session: SessionDep, rt: OrdersRuntimeDep, _: OrderWrite) -> CheckoutOut:
    order = await service.new_checkout(
        session, order_id, gateway=rt.gateway, settings=rt.settings, price_for=rt.price_for
    )
    assert order.checkout_session_id is not None
    return CheckoutOut(
        order_id=order.id, checkout_session_id=order.checkout_session_id, checkout_url=order.checkout_url
    )


@router.get(
    "/{order_id}/events",
    name="events",
    summary="Server-Sent Events: the order's history, then its live state changes and provisioning log",
    response_class=EventSourceResponse,
)
async def events(
    order_id: uuid.UUID,
    session: SessionDep,
    rt: OrdersRuntimeDep,
    _: OrderRead,
    last_event_id: LastEventId = None,
    after: After | None = None,
) -> EventSourceResponse:
    if await repo.status_of(session, order_id) is None:
        raise NotFound("No order with that id.", order_id=str(order_id))
    cursor = sse_cursor(last_event_id, after)
    stream = order_events(rt.sessions, rt.listener, order_id, after_id=cursor)
    return EventSourceResponse(stream, ping=rt.settings.sse_ping_seconds, headers={"X-Accel-Buffering": "no"})
