"""The hub's test support: fixtures and helpers its tests (and the cross-service tests under tests/) import.

Kept outside ``src`` so the hub's package never ships pytest or the fakes; pytest finds it through ``pythonpath``
in the root pyproject.toml.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI

from letsbe_hub import web
from letsbe_hub.app import ROUTERS
from letsbe_hub.config import HubSettings
from letsbe_hub.db import SCHEMA
from letsbe_platform.outbox import OutboxRelay
from letsbe_platform.web import Runtime, create_service_app, runtime


def hub_app(
    settings: HubSettings,
    *,
    routers: Sequence[APIRouter] = ROUTERS,
    workers: Callable[[Runtime, HubSettings], Any] | None = None,
) -> FastAPI:
    """The hub's routes (all, or one context's) with the shared problem+json/auth behaviour and a database.

    Only with ``workers`` does it connect the bus and run the outbox relay and those workers (``workers(rt,
    settings)``; what it returns is ``app.state.workers``), so a test sees exactly what one context does, with no
    other worker moving rows behind its back.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime(settings, bus=workers is not None) as rt:
            app.state.runtime = rt
            app.state.settings = settings
            if workers is not None:
                assert rt.bus is not None
                relay = OutboxRelay(settings.database_url or "", SCHEMA, rt.bus, poll_seconds=0.2)
                rt.start("outbox-relay", relay.run(), relay.stop)
                app.state.workers = workers(rt, settings)
            yield

    app = create_service_app(title="hub (tests)", version="test", lifespan=lifespan, routers=list(routers))
    web.install(app)
    return app
