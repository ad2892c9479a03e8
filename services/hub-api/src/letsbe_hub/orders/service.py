"""The rules of the orders context: creation, operator actions, payment confirmation and the event-driven walk."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts.enums import AutomationMode, FailureStage, Tier
from letsbe_contracts.enums import OrderStatus as S
from letsbe_contracts.events import (
    DnsReadyV1,
    DnsRecordRef,
    OrderCreatedV1,
    OrderSpec,
    ServerAllocatedV1,
    ServerTarget,
)
from letsbe_hub.catalog.service import size
from letsbe_hub.config import HubSettings
from letsbe_hub.db import outbox
from letsbe_hub.orders import repository as repo
from letsbe_hub.orders import state
from letsbe_hub.orders.models import Order
from letsbe_hub.orders.schemas import OrderCreate
from letsbe_hub.orders.state import ACTIVE, HAPPY_PATH, RETRY_TARGET, STAGE_OF, STAGE_RANK, IllegalTransition
from letsbe_hub.payments.errors import PaymentsNotConfigured
from letsbe_hub.payments.gateway import CheckoutRequest, PaymentGateway
from letsbe_platform.errors import Conflict, NotFound, Unprocessable
from letsbe_platform.logging import get_logger
from letsbe_platform.outbox import add_event

log = get_logger(__name__)

# Event ids derived from (event, order, attempt): staging the same emission twice stages it once.
_EVENT_NS = uuid.UUID("5b3f0c5e-8a7e-4c38-9d0e-6c1f2f1b7a10")


def event_id(kind: str, order_id: uuid.UUID, attempt: int) -> uuid.UUID:
    return uuid.uuid5(_EVENT_NS, f"{kind}:{order_id}:{attempt}")


def spec(order: Order) -> OrderSpec:
    return OrderSpec(
        order_id=order.id,
        domain=order.domain,
        tier=order.tier,
        region=order.region,
        tools=tuple(order.tools),
        automation_mode=order.automation_mode,
        customer_email=order.customer_email,
        cloudflare_zone_id=order.cloudflare_zone_id,
    )


async def _get(session: AsyncSession, order_id: uuid.UUID) -> Order:
    order = await repo.get(session, order_id)
    if order is None:
        raise NotFound("No order with that id.", order_id=str(order_id))
    return order


# --- creation and checkout --------------------------------------------------------------------------------------


def _checkout_request(order: Order, settings: HubSettings, price_id: str | None = None) -> CheckoutRequest:
    def url(template: str) -> str:
        return template.replace("{order_id}", str(order.id))

    return CheckoutRequest(
        order_id=order.id,
        customer_email=order.customer_email,
        description=f"LetsBe {Tier(order.tier).value.title()} server ({order.region.upper()}) for {order.domain}",
        amount_cents=order.amount_cents,
        currency=order.currency,
        success_url=url(settings.checkout_success_url),
        cancel_url=url(settings.checkout_cancel_url),
        domain=order.domain,
        price_id=price_id,
    )


async def create_order(
    session: AsyncSession,
    body: OrderCreate,
    *,
    actor: str,
    gateway: PaymentGateway | None,
    settings: HubSettings,
    price_id: str | None = None,
) -> Order:
    """Validate against the catalog, open a Stripe Checkout Session (if payments are configured), store PENDING_PAYMENT.

    With ``price_id`` (a recurring Price) the session is a subscription's; without, it charges ``amount_cents`` once.
    Stripe is called before anything is written: if it fails, the caller gets a 502 and nothing exists.
    """
    sizing = size(body.tools)
    fit = sizing.fit(body.tier)
    if not fit.fits:
        hint = (
            f"the smallest tier that fits is {sizing.recommended_tier}" if sizing.recommended_tier else "no tier fits"
        )
        raise Unprocessable(
            f"The selected tools need {sizing.total_ram_mb} MB RAM (incl. {sizing.overhead_ram_mb} MB LetsBe overhead)"
            f" and {sizing.disk_gb} GB disk; a {body.tier} server has {fit.ram_mb} MB and {fit.disk_gb} GB — {hint}.",
            required_ram_mb=sizing.total_ram_mb,
            recommended_tier=sizing.recommended_tier,
        )
    existing = await repo.live_order_for_domain(session, body.domain)
    if existing is not None:
        raise Conflict(f"{body.domain} already has a live order.", order_id=str(existing))
    order = Order(
        id=uuid.uuid4(),
        customer_name=body.customer_name,
        customer_email=body.customer_email,
        domain=body.domain,
        tier=body.tier,
        region=body.region,
        tools=list(sizing.tools),
        automation_mode=body.automation_mode,
        cloudflare_zone_id=body.cloudflare_zone_id,
        amount_cents=settings.tier_prices_cents[body.tier],
        currency=settings.stripe_currency,
        created_by=actor,
        status=HAPPY_PATH[0],
        retry_count=0,
        amount_refunded_cents=0,
        payment_failures=0,
    )
    if gateway is not None:
        checkout = await gateway.create_checkout(
            _checkout_request(order, settings, price_id), idempotency_key=f"order-{order.id}-checkout"
        )
        order.checkout_session_id, order.checkout_url = checkout.id, checkout.url
    try:
        await state.record_creation(session, order, actor=actor)
    except IntegrityError:  # a concurrent order for the same domain won the race
        raise Conflict(f"{body.domain} already has a live order.") from None
    log.info("order created", order_id=str(order.id), tier=order.tier, mode=order.automation_mode)
    return order


async def new_checkout(
    session: AsyncSession,
    order_id: uuid.UUID,
    *,
    gateway: PaymentGateway | None,
    settings: HubSettings,
    price_for: Callable[[Order], Awaitable[str | None]] | None = None,
) -> Order:
    """A fresh Checkout Session for an unpaid order (the first one expired or was lost). ``price_for`` names the
    recurring Price of a subscription order (billing's), so its new session is a subscription's again."""
    if gateway is None:
        raise PaymentsNotConfigured("Set LETSBE_HUB_STRIPE_SECRET_KEY to take payments.")
    order = await _get(session, order_id)
    if order.status != S.PENDING_PAYMENT:
        raise IllegalTransition(f"Only an unpaid order gets a checkout session; this one is {order.status}.")
    price_id = await price_for(order) if price_for is not None else None
    checkout = await gateway.create_checkout(
        _checkout_request(order, settings, price_id), idempotency_key=f"order-{order.id}-checkout-{uuid.uuid4()}"
    )
    await repo.set_fields(session, order.id, checkout_session_id=checkout.id, checkout_url=checkout.url)
    return await _get(session, order.id)


# --- operator actions ---------------------------------------------------------------------------------------------


async def cancel(session: AsyncSession, order_id: uuid.UUID, *, actor: str, reason: str) -> Order:
    await _get(session, order_id)
    return await state.transition(session, order_id, S.CANCELLED, actor=actor, reason=reason)


async def release(session: AsyncSession, order_id: uuid.UUID, *, actor: str) -> Order:
    """A MANUAL order waits at PAYMENT_CONFIRMED until an operator lets it into automation."""
    order = await _get(session, order_id)
    if order.automation_mode != AutomationMode.MANUAL:
        raise IllegalTransition("Only MANUAL orders are released by hand; AUTO orders enter automation when paid.")
    return await _enter_automation(session, order, actor=actor, reason="released by an operator")


async def retry(
    session: AsyncSession, order_id: uuid.UUID, *, actor: str, force: bool = False, note: str | None = None
) -> Order:
    """Resume a FAILED order at its failed stage by re-emitting the event that starts that stage (new event id)."""
    order = await _get(session, order_id)
    if order.status != S.FAILED:
        raise IllegalTransition(
            f"Only a FAILED order can be retried; this one is {order.status}.", current_status=order.status
        )
    if order.failure_retryable is False and not force:
        raise Conflict("The failure was reported as not retryable; fix the cause, then retry with force=true.")
    stage = FailureStage(order.failed_stage or FailureStage.ALLOCATION)
    # Resume at the earliest stage whose input we hold (a failure may come before we saw the stage's event).
    if stage is FailureStage.PROVISIONING and (order.server_target is None or order.dns_records is None):
        stage = FailureStage.DNS
    if stage is FailureStage.DNS and order.server_target is None:
        stage = FailureStage.ALLOCATION
    attempt = order.retry_count + 1
    reason = f"retry #{attempt} from {stage}" + (f": {note}" if note else "")
    order = await state.transition(
        session, order.id, RETRY_TARGET[stage], actor=actor, reason=reason, expected=S.FAILED, retry_count=attempt
    )
    o = spec(order)
    if stage is FailureStage.ALLOCATION:
        event = OrderCreatedV1(order=o)
    elif stage is FailureStage.DNS:
        event = ServerAllocatedV1(order=o, server=ServerTarget.model_validate(order.server_target))
    elif stage is FailureStage.PROVISIONING:
        event = DnsReadyV1(
            order=o,
            server=ServerTarget.model_validate(order.server_target),
            records=tuple(DnsRecordRef.model_validate(r) for r in order.dns_records or ()),
        )
    else:
        return order  # PAYMENT: back to PENDING_PAYMENT, the customer pays again
    await add_event(session, outbox, event, correlation_id=order.id, event_id=event_id(event.TYPE, order.id, attempt))
    log.info("order retried", order_id=str(order.id), stage=stage, attempt=attempt)
    return order


async def _enter_automation(session: AsyncSession, order: Order, *, actor: str, reason: str) -> Order:
    order = await state.transition(
        session, order.id, S.AWAITING_SERVER, actor=actor, reason=reason, expected=S.PAYMENT_CONFIRMED
    )
    await add_event(
        session,
        outbox,
        OrderCreatedV1(order=spec(order)),
        correlation_id=order.id,
        event_id=event_id(OrderCreatedV1.TYPE, order.id, order.retry_count),
    )
    return order


# --- payment (called by the Stripe webhook) ----------------------------------------------------------------------


async def confirm_payment(
    session: AsyncSession,
    order: Order,
    *,
    actor: str,
    checkout_session_id: str,
    payment_intent_id: str | None,
) -> str:
    """PENDING_PAYMENT → PAYMENT_CONFIRMED (→ AWAITING_SERVER + order-created in AUTO). Returns the outcome."""
    if order.status == S.PENDING_PAYMENT:
        order = await state.transition(
            session,
            order.id,
            S.PAYMENT_CONFIRMED,
            actor=actor,
            reason=f"paid (checkout session {checkout_session_id})",
            expected=S.PENDING_PAYMENT,
            checkout_session_id=checkout_session_id,
            payment_intent_id=payment_intent_id,
            paid_at=func.now(),
        )
        if order.automation_mode == AutomationMode.AUTO:
            await _enter_automation(session, order, actor=actor, reason="AUTO mode: into automation once paid")
        return "confirmed"
    if order.paid_at is not None and order.checkout_session_id in (checkout_session_id, None):
        return "already-confirmed"
    # Money arrived for an order that is not waiting for it: a person must decide (refund, reinstate).
    what = "a second payment" if order.paid_at is not None else "a payment"
    await flag(
        session,
        order.id,
        f"{what} arrived (checkout session {checkout_session_id}) while the order was "
        f"{order.status}: refund or reinstate it",
    )
    return "flagged"


async def flag(session: AsyncSession, order_id: uuid.UUID, message: str) -> None:
    log.warning("order needs attention", order_id=str(order_id), attention=message)
    await repo.set_fields(session, order_id, attention=message[:4000])


# --- the event-driven walk (consumers) --------------------------------------------------------------------------


async def advance(
    session: AsyncSession, order_id: uuid.UUID, target: S, *, actor: str, reason: str, **fields: object
) -> bool:
    """Walk the happy path up to ``target`` (each step a recorded transition). False when there is nothing to do.

    An event implies every earlier stage is done (dns-ready carries the server too), so an order that missed an
    event — delivered late or out of order — catches up; an event for an order already at or past ``target``, or
    not in automation (unpaid, FAILED, CANCELLED), changes nothing.
    """
    await state.lock_stream(session, order_id)  # read and walk under the order's lock: no one moves it meanwhile
    order = await repo.get(session, order_id)
    if order is None:
        raise LookupError(f"unknown order {order_id}")
    current = S(order.status)
    first = HAPPY_PATH.index(S.AWAITING_SERVER)
    if current not in ACTIVE or HAPPY_PATH.index(current) < first:
        log.info("event ignored: order not in automation", order_id=str(order_id), status=current, target=target)
        return False
    if HAPPY_PATH.index(current) >= HAPPY_PATH.index(target):
        return False
    path = HAPPY_PATH[HAPPY_PATH.index(current) + 1 : HAPPY_PATH.index(target) + 1]
    for i, status in enumerate(path):
        await state.transition(
            session, order_id, status, actor=actor, reason=reason, expected=current, **(fields if i == 0 else {})
        )
        current = status
    return True


async def fail(
    session: AsyncSession,
    order_id: uuid.UUID,
    *,
    stage: FailureStage,
    reason: str,
    retryable: bool,
    actor: str,
) -> bool:
    """FAILED(stage) unless the order is not active or already past that stage (a stale failure)."""
    await state.lock_stream(session, order_id)
    order = await repo.get(session, order_id)
    if order is None:
        log.warning("failure for an unknown order ignored", order_id=str(order_id), stage=stage)
        return False
    current = S(order.status)
    if current not in ACTIVE:
        return False
    if STAGE_RANK[stage] < STAGE_RANK[STAGE_OF[current]]:
        log.info("stale failure ignored", order_id=str(order_id), stage=stage, status=current)
        return False
    await state.transition(
        session, order_id, S.FAILED, actor=actor, reason=reason, stage=stage, retryable=retryable, expected=current
    )
    return True
