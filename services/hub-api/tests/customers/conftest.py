from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager
from cryptography.fernet import Fernet

from hub_testing import hub_app
from hub_testing.browser import browser  # noqa: F401 - fixture (one Chromium per module)
from hub_testing.orders import (  # noqa: F401 - fixtures
    RunningStripe,
    _stripe_server,
    orders_settings,
    smtp_server,
    stripe_fake,
)
from letsbe_fakes.smtp import FakeSmtp
from letsbe_hub.config import HubSettings
from letsbe_hub.orders import wiring


@pytest.fixture
def hub_settings(
    database_url: str,
    nats_url: str,
    bus_namespace: str,
    stripe_fake: RunningStripe,  # noqa: F811 - the imported fixture, asked for by name
    smtp_server: FakeSmtp,  # noqa: F811
) -> HubSettings:
    return orders_settings(
        database_url,
        nats_url,
        bus_namespace,
        stripe_fake,
        smtp_server,
        credentials_key=Fernet.generate_key().decode(),
        public_url="https://hub",
        trusted_proxies=["127.0.0.1"],  # the test client's address plays the hub's nginx
    )


@pytest_asyncio.fixture
async def customer_app(hub_settings: HubSettings) -> AsyncIterator:
    app = hub_app(hub_settings, workers=wiring.start)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        yield app  # its lifespan keeps what requests need on app.state


def client_of(app) -> httpx.AsyncClient:
    """A browser-like client: https (the cookies are Secure), its own cookie jar."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://hub")


@pytest_asyncio.fixture
async def alice(customer_app) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(customer_app) as c:
        yield c


@pytest_asyncio.fixture
async def bob(customer_app) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(customer_app) as c:
        yield c
