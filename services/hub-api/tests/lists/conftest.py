from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
from asgi_lifespan import LifespanManager

from hub_testing import hub_app
from hub_testing.tenants import admin, hub_settings  # noqa: F401 - fixtures
from letsbe_hub.config import HubSettings


@pytest_asyncio.fixture
async def hub(hub_settings: HubSettings) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    """Every route of the hub, without its workers: the lists only read, and the rows a test writes stay as written
    (no sweep or rollout tick moves them, and none competes with the requests for the event loop)."""
    app = hub_app(hub_settings, workers=lambda rt, settings: None)  # the bus connected, the outbox relayed
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=manager.app), base_url="http://hub") as client:
            yield client
