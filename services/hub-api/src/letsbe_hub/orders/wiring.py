"""Resources and workers of orders, payments and notifications, built from settings when the app starts.

``start(rt, settings)`` is called from ``letsbe_hub.app.start_workers``; endpoints reach the resources with
``OrdersRuntimeDep``. Everything is closed when the runtime stops (each resource is a supervised task).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from letsbe_contracts.events import (
    DeadLetteredV1,
    DnsReadyV1,
    OrderFailedV1,
    ProvisionedV1,
    ProvisioningLogV1,
    ProvisioningStepV1,
    ServerAllocatedV1,
)
from letsbe_hub.config import HubSettings
from letsbe_hub.notifications.mailer import WelcomeMailer
from letsbe_hub.orders.handlers import OrderHandlers
from letsbe_hub.orders.models import Order
from letsbe_hub.orders.state import STREAM_CHANNEL
from letsbe_hub.payments.gateway import PaymentGateway, StripeGateway
from letsbe_platform.errors import ServiceUnavailable
from letsbe_platform.listen import Listener
from letsbe_platform.web import Runtime, Slot


@dataclass
class OrdersRuntime:
    settings: HubSettings
    sessions: async_sessionmaker[AsyncSession]
    gateway: PaymentGateway | None
    listener: Listener
    mailer: WelcomeMailer | None
    handlers: OrderHandlers
    # The recurring Price of a subscription order, set by the billing context when it starts (None: one-time).
    price_for: Callable[[Order], Awaitable[str | None]] | None = None


ORDERS: Slot[OrdersRuntime] = Slot("orders")


def start(rt: Runtime, settings: HubSettings) -> OrdersRuntime:
    gateway: PaymentGateway | None = None
    if settings.stripe_secret_key is not None:
        gateway = StripeGateway(settings.stripe_secret_key.get_secret_value(), api_base=settings.stripe_api_base)
        rt.close_last(gateway.aclose)
    listener = Listener(rt.database_url, STREAM_CHANNEL)
    rt.start("order-stream-listener", listener.run(), listener.stop)
    mailer: WelcomeMailer | None = None
    kick_mailer: Callable[[], None] = lambda: None  # noqa: E731
    if settings.smtp_host:
        mailer = WelcomeMailer(rt.sessions, settings)
        kick_mailer = rt.every("welcome-mailer", mailer.poll_seconds, mailer.send_due).kick
    handlers = OrderHandlers(rt.sessions, settings, on_fulfilled=kick_mailer)
    rt.consume("hub-on-server-allocated", ServerAllocatedV1, handlers.on_server_allocated)
    rt.consume("hub-on-dns-ready", DnsReadyV1, handlers.on_dns_ready)
    rt.consume("hub-on-provisioned", ProvisionedV1, handlers.on_provisioned)
    rt.consume("hub-on-order-failed", OrderFailedV1, handlers.on_order_failed)
    rt.consume("hub-on-dead-lettered", DeadLetteredV1, handlers.on_dead_lettered)
    rt.consume("hub-on-provisioning-step", ProvisioningStepV1, handlers.on_provisioning_step)
    rt.consume("hub-on-provisioning-log", ProvisioningLogV1, handlers.on_provisioning_log)  # one fetcher: in order
    orders_rt = OrdersRuntime(settings, rt.sessions, gateway, listener, mailer, handlers)
    return rt.attach(ORDERS, orders_rt)


def get_orders_runtime(request: Request) -> OrdersRuntime:
    orders_rt = request.app.state.runtime.part(ORDERS)
    if orders_rt is None:  # an app built without the orders workers (one context's tests)
        raise ServiceUnavailable("Orders are not served by this process.")
    return orders_rt


OrdersRuntimeDep = Annotated[OrdersRuntime, Depends(get_orders_runtime)]
