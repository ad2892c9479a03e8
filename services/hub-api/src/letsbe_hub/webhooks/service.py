"""Stripe webhook events → order and subscription changes. One transaction per event; each event id is handled once.

Out-of-order delivery is normal for Stripe, so every handler checks the order's current state instead of
assuming the previous event arrived: an ``expired`` after ``completed`` does nothing, a refund of a fulfilled
order is recorded and flagged for a person, money for a cancelled order is flagged.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts.enums import OrderStatus as S
from letsbe_contracts.validation import RequestModel
from letsbe_hub.billing import service as billing
from letsbe_hub.billing.schemas import InvoiceObj, SubscriptionObj
from letsbe_hub.config import HubSettings
from letsbe_hub.orders import repository as orders_repo
from letsbe_hub.orders import service as orders
from letsbe_hub.orders import state
from letsbe_hub.orders.models import Order
from letsbe_hub.webhooks.errors import InvalidWebhook
from letsbe_hub.webhooks.models import StripeEvent

ACTOR = "stripe"
BILLING_TYPES = (
    "invoice.paid",
    "invoice.payment_failed",
    "customer.subscription.deleted",
    "customer.subscription.updated",
)
HANDLED_TYPES = (
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
    "payment_intent.payment_failed",
    "charge.refunded",
    *BILLING_TYPES,
)


# --- the parts of Stripe's objects we rely on (validated; everything else is ignored) ----------------------------


class _Obj(RequestModel):
    """Signed is not the same as well-formed: anything we store or compare is bounded and free of control
    characters, so a malformed event is a 400 (Stripe stops retrying it) and never a 500 (retried for days)."""

    model_config = ConfigDict(extra="ignore")


# Stripe ids are short ASCII words ("evt_1Q…", "cs_test_…"); the event id column is 255 wide.
StripeId = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_]+$")]
LATEST_TIMESTAMP = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second Python's datetime can hold


class EventData(BaseModel):
    # Not checked as a whole (a customer's name may hold anything); the fields we use are, when parsed below.
    object: dict[str, Any]


class StripeEventIn(_Obj):
    id: StripeId
    object: str
    type: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[a-z0-9_.]+$")]
    created: Annotated[int, Field(ge=0, le=LATEST_TIMESTAMP)]
    livemode: bool
    data: EventData


class CheckoutSessionObj(_Obj):
    id: str
    client_reference_id: str | None = None
    metadata: dict[str, str] | None = None
    payment_status: str | None = None
    payment_intent: str | None = None
    mode: str | None = None
    customer: StripeId | None = None
    subscription: StripeId | None = None


class PaymentErrorObj(_Obj):
    message: str | None = None
    code: str | None = None


class PaymentIntentObj(_Obj):
    id: str
    metadata: dict[str, str] | None = None
    last_payment_error: PaymentErrorObj | None = None


class ChargeObj(_Obj):
    id: str
    payment_intent: str | None = None
    metadata: dict[str, str] | None = None
    amount_refunded: Annotated[int, Field(ge=0, le=2**31 - 1)]  # stored in an integer column
    currency: Annotated[str, StringConstraints(min_length=3, max_length=3)]


def parse_event(payload: bytes) -> StripeEventIn:
    try:
        event = StripeEventIn.model_validate_json(payload)
    except ValidationError as exc:
        raise InvalidWebhook("The payload is not a Stripe event.", errors=_locs(exc)) from None
    if event.object != "event":
        raise InvalidWebhook("The payload is not a Stripe event.")
    return event


def _locs(exc: ValidationError) -> list[str]:
    return [".".join(map(str, e["loc"])) for e in exc.errors()[:10]]


def _obj(model: type[_Obj], event: StripeEventIn) -> Any:
    try:
        return model.model_validate(event.data.object)
    except ValidationError as exc:
        raise InvalidWebhook(f"A {event.type} event without the fields it must have.", errors=_locs(exc)) from None


def _order_ref(*candidates: str | None) -> uuid.UUID | None:
    for c in candidates:
        if c:
            try:
                return uuid.UUID(c)
            except ValueError:
                continue
    return None


# --- processing -------------------------------------------------------------------------------------------------


async def claim_event(session: AsyncSession, event: StripeEventIn) -> bool:
    """True the first time this event id is seen. A concurrent duplicate waits on the row lock and then gets False."""
    stmt = (
        insert(StripeEvent)
        .values(
            event_id=event.id,
            type=event.type[:100],
            livemode=event.livemode,
            stripe_created_at=datetime.fromtimestamp(event.created, UTC),
        )
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(StripeEvent.event_id)
    )
    return (await session.execute(stmt)).scalar_one_or_none() is not None


async def process(session: AsyncSession, event: StripeEventIn, settings: HubSettings) -> str:
    """Apply one (already verified, first-seen) event; returns the outcome that is stored with the event id."""
    order: Order | None = None
    order_id: uuid.UUID | None = None
    outcome = "ignored"
    at = datetime.fromtimestamp(event.created, UTC)
    if event.type == "invoice.paid":
        order_id, outcome = await billing.on_invoice_paid(session, _obj(InvoiceObj, event), settings)
    elif event.type == "invoice.payment_failed":
        inv = _obj(InvoiceObj, event)
        order_id, outcome = await billing.on_invoice_payment_failed(session, inv, settings, at=at)
    elif event.type == "customer.subscription.deleted":
        obj = _obj(SubscriptionObj, event)
        order_id, outcome = await billing.on_subscription_deleted(session, obj, settings, at=at)
    elif event.type == "customer.subscription.updated":
        order_id, outcome = await billing.on_subscription_updated(session, _obj(SubscriptionObj, event), settings)
    elif event.type in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
        cs = _obj(CheckoutSessionObj, event)
        order = await _find(session, cs.metadata, cs.client_reference_id, checkout_session_id=cs.id)
        if order is None:
            outcome = "unknown-order"
        elif cs.payment_status not in ("paid", "no_payment_required"):
            outcome = "awaiting-async-payment"  # completed, but the money comes later (async_payment_succeeded)
        else:
            if cs.mode == "subscription" and cs.subscription:
                await billing.on_checkout_completed(
                    session, order, subscription_id=cs.subscription, customer_id=cs.customer
                )
            outcome = await orders.confirm_payment(
                session, order, actor=ACTOR, checkout_session_id=cs.id, payment_intent_id=cs.payment_intent
            )
    elif event.type == "checkout.session.expired":
        cs = _obj(CheckoutSessionObj, event)
        order = await _find(session, cs.metadata, cs.client_reference_id, checkout_session_id=cs.id)
        if order is None:
            outcome = "unknown-order"
        elif order.status == S.PENDING_PAYMENT and order.checkout_session_id == cs.id:
            await state.transition(
                session,
                order.id,
                S.CANCELLED,
                actor=ACTOR,
                reason="checkout session expired unpaid",
                expected=S.PENDING_PAYMENT,
            )
            outcome = "cancelled"
        else:
            outcome = "ignored-stale"  # paid meanwhile, or an older session than the order's current one
    elif event.type in ("payment_intent.payment_failed", "checkout.session.async_payment_failed"):
        if event.type == "payment_intent.payment_failed":
            pi = _obj(PaymentIntentObj, event)
            order = await _find(session, pi.metadata, payment_intent_id=pi.id)
            error = (pi.last_payment_error.message if pi.last_payment_error else None) or "payment failed"
        else:
            cs = _obj(CheckoutSessionObj, event)
            order = await _find(session, cs.metadata, cs.client_reference_id, checkout_session_id=cs.id)
            error = "the delayed payment failed"
        if order is None:
            outcome = "unknown-order"
        elif order.status == S.PENDING_PAYMENT:
            # The customer can try again in the same checkout session: record it, change no state.
            await session.execute(
                update(Order)
                .where(Order.id == order.id)
                .values(payment_failures=Order.payment_failures + 1, last_payment_error=error[:2000])
            )
            outcome = "payment-failed-recorded"
        else:
            outcome = "ignored-stale"
    elif event.type == "charge.refunded":
        ch = _obj(ChargeObj, event)
        order = await _find(session, ch.metadata, payment_intent_id=ch.payment_intent)
        if order is None:
            outcome = "unknown-order"
        else:
            # amount_refunded is cumulative, so taking the max makes replays and reordering converge.
            refunded = max(order.amount_refunded_cents, ch.amount_refunded)
            await orders_repo.set_fields(session, order.id, amount_refunded_cents=refunded)
            outcome = "refund-recorded"
            if order.status not in (S.PENDING_PAYMENT, S.CANCELLED):
                await orders.flag(
                    session,
                    order.id,
                    f"refunded {refunded / 100:.2f} {ch.currency.upper()} (charge {ch.id}) while the order is "
                    f"{order.status}: decide whether to stop or decommission it",
                )
                outcome = "refund-recorded-flagged"
    await session.execute(
        update(StripeEvent)
        .where(StripeEvent.event_id == event.id)
        .values(outcome=outcome, order_id=order.id if order else order_id)
    )
    return outcome


async def _find(
    session: AsyncSession,
    metadata: dict[str, str] | None,
    client_reference_id: str | None = None,
    *,
    checkout_session_id: str | None = None,
    payment_intent_id: str | None = None,
) -> Order | None:
    order = await orders_repo.find_for_payment(
        session,
        order_id=_order_ref((metadata or {}).get("order_id"), client_reference_id),
        checkout_session_id=checkout_session_id,
        payment_intent_id=payment_intent_id,
    )
    if order is None:
        return None
    # Two different events about one order (completed + async_payment_succeeded) wait for each other here and
    # the second sees the first one's result, instead of both acting on the same stale read.
    await state.lock_stream(session, order.id)
    return await orders_repo.get(session, order.id)
