"""Test fixtures of the billing context: the hub with the orders and billing workers, against the Stripe fake."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from hub_testing import hub_app
from hub_testing.orders import orders_settings
from letsbe_hub.billing import wiring as billing_wiring
from letsbe_hub.config import HubSettings
from letsbe_hub.orders import wiring as orders_wiring

GRACE = 3600
EXPORT_WINDOW = 7200


def billing_settings(database_url, nats_url, bus_namespace, stripe, smtp, **extra: Any) -> HubSettings:
    return orders_settings(
        database_url,
        nats_url,
        bus_namespace,
        stripe,
        smtp,
        billing_grace_seconds=GRACE,
        billing_export_window_seconds=EXPORT_WINDOW,
        billing_tick_seconds=3600,  # tests drive the worker's tick themselves, with their own clock
        **extra,
    )


@pytest.fixture
def hub_settings(database_url, nats_url, bus_namespace, stripe_fake, smtp_server) -> HubSettings:
    return billing_settings(database_url, nats_url, bus_namespace, stripe_fake, smtp_server)


def workers(rt, settings):
    orders_wiring.start(rt, settings)
    return billing_wiring.start(rt, settings)


@dataclass
class BillingHub:
    app: FastAPI
    client: httpx.AsyncClient

    @property
    def billing(self) -> billing_wiring.BillingRuntime:
        return self.app.state.workers


@pytest_asyncio.fixture
async def billing_hub(hub_settings: HubSettings) -> AsyncIterator[BillingHub]:
    app = hub_app(hub_settings, workers=workers)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=("203.0.113.10", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            yield BillingHub(app, client)
