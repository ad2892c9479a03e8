"""The rules of billing: the public order, and what Stripe's billing events do to the tenant.

States (one table, one compare-and-set function, as orders.state):

    ACTIVE ──invoice.payment_failed──▶ PAST_DUE ──grace over (worker)──▶ SUSPENDED
      ▲                                   │                                 │
      └────────────invoice.paid───────────┴──────────invoice.paid───────────┘  (SUSPENDED → ACTIVE also resumes)
    any of those ──customer.subscription.deleted──▶ CANCELLED ──export window over (worker)──▶ DECOMMISSIONED

Every event handler runs inside the webhook's transaction, after the event id was claimed (webhooks.service), and
checks the current state instead of assuming order: a stale ``payment_failed`` after a later ``paid`` for a newer
period changes nothing. Side effects (emails, agent commands) have ids derived from their cause, so they happen once.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts.enums import OrderStatus
from letsbe_hub.billing import emails
from letsbe_hub.billing.abuse import refuse_disposable
from letsbe_hub.billing.models import Subscription, SubscriptionState
from letsbe_hub.billing.prices import WEBSITE, PriceBook, tier_of_lookup_key
from letsbe_hub.billing.schemas import InvoiceObj, PublicOrderCreate, SubscriptionObj
from letsbe_hub.commands import service as commands
from letsbe_hub.config import HubSettings
from letsbe_hub.lifecycle.tenants import decommission
from letsbe_hub.orders import repository as orders_repo
from letsbe_hub.orders import service as orders
from letsbe_hub.orders.models import Order
from letsbe_hub.payments.gateway import PaymentGateway
from letsbe_hub.tenants import repository as tenants_repo
from letsbe_hub.tenants import service as tenants
from letsbe_hub.tenants.errors import TenantNotFound
from letsbe_platform import state
from letsbe_platform.errors import Conflict, NotFound
from letsbe_platform.logging import get_logger

log = get_logger(__name__)

ACTOR = "billing"
S = SubscriptionState
ALLOWED: dict[SubscriptionState, frozenset[SubscriptionState]] = {
    S.ACTIVE: frozenset({S.PAST_DUE, S.CANCELLED}),
    S.PAST_DUE: frozenset({S.ACTIVE, S.SUSPENDED, S.CANCELLED}),
    S.SUSPENDED: frozenset({S.ACTIVE, S.CANCELLED}),
    S.CANCELLED: frozenset({S.DECOMMISSIONED}),
}


# --- the public order -------------------------------------------------------------------------------------------


async def place_order(
    session: AsyncSession,
    body: PublicOrderCreate,
    *,
    gateway: PaymentGateway | None,
    prices: PriceBook,
    settings: HubSettings,
) -> Order:
    """A website order: the abuse rules, then the admin route's own validation and creation, in subscription mode."""
    refuse_disposable(body.email, settings.disposable_email_domains)
    email = body.email.lower()
    # One pending order per email: concurrent requests for one address queue here (one per domain is the orders
    # table's own unique index on live domains).
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": f"order-email:{email}"})
    pending = (
        await session.execute(
            select(Order.id).where(
                func.lower(Order.customer_email) == email, Order.status == OrderStatus.PENDING_PAYMENT
            )
        )
    ).scalar()
    if pending is not None:
        raise Conflict(
            f"{body.email} already has an order waiting for payment; finish or cancel its checkout first.",
            order_id=str(pending),
        )
    existing = await orders_repo.live_order_for_domain(session, body.domain)
    if existing is not None:
        raise Conflict(f"{body.domain} already has a live order.", order_id=str(existing))
    price_id = await prices.price_for(body.tier, body.region)
    return await orders.create_order(
        session, body.as_order(), actor=WEBSITE, gateway=gateway, settings=settings, price_id=price_id
    )


async def subscription_of(session: AsyncSession, order_id: uuid.UUID) -> Subscription | None:
    return await _by_order(session, order_id)


async def portal_url(session: AsyncSession, order_id: uuid.UUID, gateway: PaymentGateway, return_url: str) -> str:
    """A Stripe Billing Portal session for the customer of this order (plan changes, card, cancellation)."""
    sub = await _by_order(session, order_id)
    if sub is None or sub.stripe_customer_id is None:
        if await orders_repo.get(session, order_id) is None:
            raise NotFound("No order with that id.", order_id=str(order_id))
        raise Conflict("This order has no Stripe subscription (yet).")
    return await gateway.create_portal_session(sub.stripe_customer_id, return_url)


# --- state ---------------------------------------------------------------------------------------------------------


class IllegalBillingTransition(Conflict):
    type, title = "illegal-billing-transition", "Illegal billing transition"


# No history table: the Stripe events that cause the moves are kept in stripe_events, the dated columns (suspended_at,
# cancelled_at, …) say when, and every move is logged.
MACHINE = state.Machine(
    noun="subscription",
    model=Subscription,
    transitions=ALLOWED,
    conflict=IllegalBillingTransition,
    id_field="order_id",
    column="state",
)


async def transition(
    session: AsyncSession, sub: Subscription, to: SubscriptionState, *, reason: str, **fields: Any
) -> Subscription:
    """Compare-and-set from the state the caller read under the row lock; nothing else writes ``state``."""
    before = sub.state
    row = await state.move(session, MACHINE, sub, to, actor=ACTOR, reason=reason, updated_at=func.now(), **fields)
    log.info("billing state", order_id=str(sub.order_id), from_state=before, to_state=to, reason=reason)
    return row


async def _by_order(session: AsyncSession, order_id: uuid.UUID, *, lock: bool = False) -> Subscription | None:
    stmt = select(Subscription).where(Subscription.order_id == order_id).execution_options(populate_existing=True)
    return (await session.execute(stmt.with_for_update() if lock else stmt)).scalar_one_or_none()


async def _locate(
    session: AsyncSession, subscription_id: str, metadata: dict[str, str] | None, customer_id: str | None
) -> Subscription | None:
    """The subscription row (locked), created from its order when Stripe's first event about it comes first."""
    stmt = select(Subscription).where(Subscription.stripe_subscription_id == subscription_id)
    sub = (await session.execute(stmt.with_for_update().execution_options(populate_existing=True))).scalar()
    if sub is not None:
        return sub
    try:
        order_id = uuid.UUID((metadata or {}).get("order_id", ""))
    except ValueError:
        return None
    order = await orders_repo.get(session, order_id)
    if order is None:
        return None
    await session.execute(
        insert(Subscription)
        .values(
            order_id=order.id,
            stripe_subscription_id=subscription_id,
            stripe_customer_id=customer_id,
            customer_email=order.customer_email,
            tier=order.tier,
            region=order.region,
        )
        .on_conflict_do_nothing()
    )
    return await _by_order(session, order.id, lock=True)


def _at(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _day(when: datetime) -> str:
    return when.strftime("%d %B %Y")


async def _order(session: AsyncSession, sub: Subscription) -> Order:
    order = await orders_repo.get(session, sub.order_id)
    assert order is not None
    return order


async def _mail(
    session: AsyncSession, sub: Subscription, settings: HubSettings, kind: str, cause: str, subject: str, lines: list
) -> None:
    await emails.enqueue(
        session,
        order_id=sub.order_id,
        kind=kind,
        cause=cause,
        recipient=sub.customer_email,
        subject=subject,
        lines=lines,
        mail_from=settings.mail_from,
    )


async def _tenant_command(session: AsyncSession, sub: Subscription, kind: str, number: int, reason: str) -> bool:
    """Queue suspend/resume for the tenant's Safety Wrapper through the command path (once per suspension)."""
    tenant = await tenants_repo.get_tenant(session, sub.order_id)
    if tenant is None or tenant.status == tenants.DECOMMISSIONED:
        return False  # not provisioned (yet) or gone: nothing runs that could be stopped
    await commands.enqueue(
        session,
        tenant_id=tenant.id,
        command_type=kind,
        params={"reason": reason},
        actor=ACTOR,
        idempotency_key=f"billing:{kind}:{number}",
        expires_in=timedelta(days=30),
    )
    return True


# --- Stripe events ----------------------------------------------------------------------------------------------


async def on_checkout_completed(
    session: AsyncSession, order: Order, *, subscription_id: str, customer_id: str | None
) -> None:
    """Remember the order's subscription and customer (invoice.paid may have created the row already)."""
    await session.execute(
        insert(Subscription)
        .values(
            order_id=order.id,
            stripe_subscription_id=subscription_id,
            stripe_customer_id=customer_id,
            customer_email=order.customer_email,
            tier=order.tier,
            region=order.region,
        )
        .on_conflict_do_update(
            index_elements=["order_id"],
            set_={"stripe_customer_id": func.coalesce(Subscription.stripe_customer_id, customer_id)},
        )
    )


async def on_invoice_paid(
    session: AsyncSession, inv: InvoiceObj, settings: HubSettings
) -> tuple[uuid.UUID | None, str]:
    details = inv.subscription
    if details is None:
        return None, "not-a-subscription-invoice"
    sub = await _locate(session, details.subscription, details.metadata, inv.customer)
    if sub is None:
        return None, "unknown-subscription"
    end = inv.service_end()
    through = _at(end) if end else None
    if through and (sub.paid_through is None or through > sub.paid_through):
        await session.execute(
            update(Subscription).where(Subscription.order_id == sub.order_id).values(paid_through=through)
        )
    until = f" Your server is paid up to {_day(through)}." if through else ""
    if sub.state == S.ACTIVE:
        return sub.order_id, "renewed"
    if sub.state == S.PAST_DUE:
        await transition(session, sub, S.ACTIVE, reason=f"invoice {inv.id} paid", past_due_since=None, grace_until=None)
        await _mail(
            session,
            sub,
            settings,
            "payment-received",
            inv.id,
            "Thank you: your LetsBe payment arrived",
            ["Hello,", "", f"we received your payment (invoice {inv.id}).{until}", "", "the LetsBe team"],
        )
        return sub.order_id, "recovered"
    if sub.state == S.SUSPENDED:
        await transition(
            session,
            sub,
            S.ACTIVE,
            reason=f"invoice {inv.id} paid",
            past_due_since=None,
            grace_until=None,
            suspended_at=None,
        )
        queued = await _tenant_command(session, sub, "resume", sub.suspensions, f"invoice {inv.id} paid")
        await _mail(
            session,
            sub,
            settings,
            "resumed",
            inv.id,
            "Your LetsBe server is running again",
            [
                "Hello,",
                "",
                f"we received your payment (invoice {inv.id}) and your tools are starting "
                f"again; nothing was lost.{until}",
                "",
                "the LetsBe team",
            ],
        )
        return sub.order_id, "resumed" if queued else "resumed-no-tenant"
    # Money for a subscription that already ended: a person decides (refund, or reinstate by hand).
    await orders.flag(session, sub.order_id, f"invoice {inv.id} was paid while the subscription is {sub.state}")
    return sub.order_id, "paid-after-end-flagged"


async def on_invoice_payment_failed(
    session: AsyncSession, inv: InvoiceObj, settings: HubSettings, *, at: datetime
) -> tuple[uuid.UUID | None, str]:
    details = inv.subscription
    if details is None:
        return None, "not-a-subscription-invoice"
    sub = await _locate(session, details.subscription, details.metadata, inv.customer)
    if sub is None:
        return None, "unknown-subscription"
    end = inv.service_end()
    if sub.paid_through is not None and end is not None and _at(end) <= sub.paid_through:
        return sub.order_id, "ignored-stale"  # that period was paid meanwhile (events arrive out of order)
    pay = f"  {inv.hosted_invoice_url}" if inv.hosted_invoice_url else "  (your Stripe invoice email has the link)"
    amount = f"{inv.amount_due / 100:.2f} {inv.currency.upper()}"
    if sub.state == S.ACTIVE:
        grace_until = at + timedelta(seconds=settings.billing_grace_seconds)
        await transition(
            session, sub, S.PAST_DUE, reason=f"invoice {inv.id} failed", past_due_since=at, grace_until=grace_until
        )
        await _mail(
            session,
            sub,
            settings,
            "payment-failed",
            f"{inv.id}:{inv.attempt_count}",
            "Action needed: your LetsBe payment failed",
            [
                "Hello,",
                "",
                f"we could not collect {amount} for your LetsBe server (invoice {inv.id}).",
                f"Please pay it or update your card by {_day(grace_until)}; after that your tools are paused until",
                "the payment arrives (your data stays).",
                "",
                pay,
                "",
                "the LetsBe team",
            ],
        )
        return sub.order_id, "dunning-started"
    if sub.state in (S.PAST_DUE, S.SUSPENDED):
        await _mail(
            session,
            sub,
            settings,
            "payment-failed",
            f"{inv.id}:{inv.attempt_count}",
            "Reminder: your LetsBe payment is still open",
            [
                "Hello,",
                "",
                f"another attempt to collect {amount} (invoice {inv.id}) failed.",
                "",
                pay,
                "",
                "the LetsBe team",
            ],
        )
        return sub.order_id, "dunning-reminded"
    return sub.order_id, "ignored-ended"


async def on_subscription_deleted(
    session: AsyncSession, obj: SubscriptionObj, settings: HubSettings, *, at: datetime
) -> tuple[uuid.UUID | None, str]:
    sub = await _locate(session, obj.id, obj.metadata, obj.customer)
    if sub is None:
        return None, "unknown-subscription"
    if sub.state in (S.CANCELLED, S.DECOMMISSIONED):
        return sub.order_id, "already-cancelled"
    until = at + timedelta(seconds=settings.billing_export_window_seconds)
    await transition(session, sub, S.CANCELLED, reason="subscription deleted", cancelled_at=at, decommission_at=until)
    order = await _order(session, sub)
    await _mail(
        session,
        sub,
        settings,
        "cancelled",
        obj.id,
        "Your LetsBe subscription has ended",
        [
            "Hello,",
            "",
            f"your subscription for {order.domain} has ended. Your server and its data stay available",
            f"until {_day(until)} so you can export what you need; after that the server and its data are deleted.",
            "",
            "the LetsBe team",
        ],
    )
    return sub.order_id, "decommission-scheduled"


async def on_subscription_updated(
    session: AsyncSession, obj: SubscriptionObj, settings: HubSettings
) -> tuple[uuid.UUID | None, str]:
    """A plan change in the Billing Portal. There is no automatic resize flow yet: the new tier is recorded and the
    order is flagged for an operator, who moves the tenant to a server of that size."""
    sub = await _locate(session, obj.id, obj.metadata, obj.customer)
    if sub is None:
        return None, "unknown-subscription"
    if not obj.items.data:
        return sub.order_id, "ignored"
    price = obj.items.data[0].price
    found = tier_of_lookup_key(price.lookup_key) or _configured_tier(settings, price.id)
    if found is None:
        await orders.flag(session, sub.order_id, f"subscription {obj.id} moved to unknown price {price.id}")
        return sub.order_id, "unknown-price-flagged"
    tier, _region = found
    before = sub.tier
    if tier.value == before and price.id == sub.price_id:
        return sub.order_id, "unchanged"
    await session.execute(
        update(Subscription)
        .where(Subscription.order_id == sub.order_id)
        .values(tier=tier.value, price_id=price.id, updated_at=func.now())
    )
    if tier.value == before:
        return sub.order_id, "price-recorded"
    await orders.flag(
        session,
        sub.order_id,
        f"the customer changed the plan from {before} to {tier.value} in the Stripe Billing Portal "
        f"(price {price.id}): resize the server to {tier.value}",
    )
    return sub.order_id, "tier-change-flagged"


def _configured_tier(settings: HubSettings, price_id: str) -> Any:
    for key, known in settings.stripe_price_ids.items():
        if known == price_id:
            return tier_of_lookup_key(f"letsbe_{key.replace(':', '_')}_monthly_x")
    return None


# --- time-based steps (the worker) --------------------------------------------------------------------------------


async def _claim_due(session: AsyncSession, state: SubscriptionState, due: Any, now: datetime) -> Subscription | None:
    """The subscription in ``state`` due longest ago, locked (skipping rows another replica holds)."""
    stmt = select(Subscription).where(Subscription.state == state, due <= now).order_by(due).limit(1)
    return (
        await session.execute(stmt.with_for_update(skip_locked=True).execution_options(populate_existing=True))
    ).scalar()


async def suspend_due(session: AsyncSession, settings: HubSettings, now: datetime) -> uuid.UUID | None:
    """Suspend one subscription whose grace ended (skipping rows another replica holds); None when none is due."""
    sub = await _claim_due(session, S.PAST_DUE, Subscription.grace_until, now)
    if sub is None:
        return None
    number = sub.suspensions + 1
    await transition(session, sub, S.SUSPENDED, reason="grace period over", suspended_at=now, suspensions=number)
    await _tenant_command(session, sub, "suspend", number, "payment overdue")
    await _mail(
        session,
        sub,
        settings,
        "suspended",
        str(number),
        "Your LetsBe tools are paused",
        [
            "Hello,",
            "",
            "your payment is still open, so your tools are paused. Your data is kept: pay the open",
            "invoice and everything starts again.",
            "",
            "the LetsBe team",
        ],
    )
    return sub.order_id


async def decommission_due(session: AsyncSession, now: datetime) -> uuid.UUID | None:
    """Decommission one cancelled subscription whose export window ended, through the tenants' decommission."""
    sub = await _claim_due(session, S.CANCELLED, Subscription.decommission_at, now)
    if sub is None:
        return None
    await transition(session, sub, S.DECOMMISSIONED, reason="export window over", decommissioned_at=now)
    try:
        # The customer's export window was this subscription's (the tenant kept running): the server goes now.
        await decommission(
            session, sub.order_id, "subscription ended; export window over", actor="billing", export_window=timedelta(0)
        )
    except TenantNotFound:
        await orders.flag(session, sub.order_id, "subscription ended but no tenant was found to decommission")
    return sub.order_id
