"""A hub process that runs only the servers context: ``python -m letsbe_hub.servers``.

The same allocation worker, checks and admin routes as the full hub (which runs them too), without the other
contexts: for scaling allocation out on its own, and for tests that start several processes quickly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from letsbe_hub import __version__
from letsbe_hub.config import HubSettings
from letsbe_hub.db import SCHEMA
from letsbe_hub.servers import endpoints, handlers
from letsbe_platform.serve import serve
from letsbe_platform.web import create_service_app, runtime


def create_app(settings: HubSettings | None = None) -> FastAPI:
    settings = settings or HubSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime(settings) as rt:
            app.state.runtime = rt
            app.state.settings = settings
            rt.relay_outbox(SCHEMA)
            handlers.start(rt, settings)
            yield

    return create_service_app(
        title="LetsBe Hub: servers worker",
        version=__version__,
        description="The hub's server pool, allocation worker and provider checks, on their own.",
        lifespan=lifespan,
        routers=endpoints.routers,
    )


def main() -> None:
    serve(create_app, HubSettings())
