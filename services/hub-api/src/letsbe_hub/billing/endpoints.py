"""The website's order route (no token, abuse-limited, answers a Stripe Checkout Session in subscription mode) and
the operator's view of an order's subscription."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, status

from letsbe_hub.auth.dependencies import Authorized
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.billing import service
from letsbe_hub.billing.schemas import PortalOut, PublicOrderCreate, PublicOrderOut, SubscriptionOut
from letsbe_hub.billing.wiring import BillingRuntimeDep
from letsbe_hub.billing.worker import utc_now
from letsbe_hub.config import HubSettings
from letsbe_hub.payments.errors import PaymentsNotConfigured
from letsbe_hub.web import limits
from letsbe_platform.db import unit_of_work
from letsbe_platform.errors import NotFound
from letsbe_platform.web import SessionDep, problems

router = APIRouter(prefix="/api/v1/public/orders", tags=["public"])
admin_router = APIRouter(prefix="/api/v1/admin/orders", tags=["orders"])
routers = [router, admin_router]


async def rate_limited(request: Request) -> None:
    """Count this attempt for the client's address before the payload is validated (an invalid one counts too),
    committed on its own so a refused request still counts."""
    settings: HubSettings = request.app.state.settings
    async with unit_of_work(request.app.state.runtime.sessions) as session:
        await limits.hit(
            session,
            f"public-order:{limits.client_address(request)}",
            limit=settings.public_order_rate_limit,
            window_seconds=settings.public_order_rate_window_seconds,
            now=utc_now(),
            what="orders",
        )


RateLimited = Annotated[None, Depends(rate_limited)]


@router.post(
    "",
    name="order",
    status_code=status.HTTP_201_CREATED,
    responses=problems(409, 422, 429, 502, 503),
    summary="Order a server from the website: answers the Stripe Checkout Session (monthly subscription) to pay",
)
async def create_public_order(
    _: RateLimited, body: PublicOrderCreate, session: SessionDep, rt: BillingRuntimeDep
) -> PublicOrderOut:
    if rt.gateway is None:
        raise PaymentsNotConfigured("Set LETSBE_HUB_STRIPE_SECRET_KEY to take orders from the website.")
    order = await service.place_order(session, body, gateway=rt.gateway, prices=rt.prices, settings=rt.prices.settings)
    assert order.checkout_session_id is not None
    return PublicOrderOut(
        order_id=order.id,
        status=order.status,
        checkout_session_id=order.checkout_session_id,
        checkout_url=order.checkout_url,
    )


@admin_router.get(
    "/{order_id}/subscription", name="subscription", summary="The order's Stripe subscription and dunning state"
)
async def get_subscription(
    order_id: uuid.UUID, session: SessionDep, _: Authorized(Scope.ORDERS_READ)
) -> SubscriptionOut:
    sub = await service.subscription_of(session, order_id)
    if sub is None:
        raise NotFound("This order has no subscription (an operator's one-time order, or not paid yet).")
    return SubscriptionOut.model_validate(sub)


@admin_router.post(
    "/{order_id}/billing-portal",
    name="billing-portal",
    responses=problems(409, 502, 503),
    summary="A Stripe Billing Portal link for the order's customer (plan, card, invoices, cancellation)",
)
async def billing_portal(
    order_id: uuid.UUID, session: SessionDep, rt: BillingRuntimeDep, _: Authorized(Scope.ORDERS_WRITE)
) -> PortalOut:
    if rt.gateway is None:
        raise PaymentsNotConfigured("Set LETSBE_HUB_STRIPE_SECRET_KEY to use the Billing Portal.")
    settings = rt.prices.settings
    return PortalOut(url=await service.portal_url(session, order_id, rt.gateway, settings.billing_portal_return_url))
