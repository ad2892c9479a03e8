"""Billing's resources and worker, built when the app starts (after the orders context, whose Stripe client it uses)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from letsbe_hub.billing.prices import PriceBook
from letsbe_hub.billing.worker import BillingWorker
from letsbe_hub.config import HubSettings
from letsbe_hub.orders import wiring as orders_wiring
from letsbe_hub.payments.errors import PaymentsNotConfigured
from letsbe_hub.payments.gateway import PaymentGateway
from letsbe_platform.web import Runtime, Slot
from letsbe_platform.workers import Periodic


@dataclass
class BillingRuntime:
    gateway: PaymentGateway | None
    prices: PriceBook
    worker: BillingWorker
    periodic: Periodic  # kicked after a billing event commits: its email goes out without waiting for the tick


BILLING: Slot[BillingRuntime] = Slot("billing")


def start(rt: Runtime, settings: HubSettings) -> BillingRuntime:
    orders_rt = rt.part(orders_wiring.ORDERS)
    assert orders_rt is not None, "billing starts after orders"
    gateway = orders_rt.gateway
    prices = PriceBook(gateway, settings)
    orders_rt.price_for = prices.price_for_order  # an operator's new checkout for a website order stays monthly
    worker = BillingWorker(rt.sessions, settings)
    warmed = False

    async def round() -> bool:
        nonlocal warmed
        if gateway is not None and not warmed:
            # The Prices exist before the first customer asks (a replica's own cache); a stop cuts it short.
            await prices.warm(stopping=lambda: periodic.stopping)
            warmed = not periodic.stopping
        return await worker.round()

    # Idempotent by construction: each due row is taken with FOR UPDATE SKIP LOCKED (billing/worker.py).
    periodic = rt.every("billing-worker", settings.billing_tick_seconds, round)
    billing_rt = BillingRuntime(gateway, prices, worker, periodic)
    return rt.attach(BILLING, billing_rt)


def kick(rt: Runtime) -> None:
    billing_rt = rt.part(BILLING)
    if billing_rt is not None:
        billing_rt.periodic.kick()


def get_billing_runtime(request: Request) -> BillingRuntime:
    billing_rt = request.app.state.runtime.part(BILLING)
    if billing_rt is None:  # an app built without the billing worker (one context's tests)
        raise PaymentsNotConfigured("Billing is not running in this process.")
    return billing_rt


BillingRuntimeDep = Annotated[BillingRuntime, Depends(get_billing_runtime)]
