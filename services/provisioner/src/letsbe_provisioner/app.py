"""The Provisioner app factory. Routers and background workers are wired here, and only here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from letsbe_platform.outbox import OutboxRelay
from letsbe_platform.web import Runtime, create_service_app, runtime

from letsbe_provisioner import __version__
from letsbe_provisioner.config import ProvisionerSettings
from letsbe_provisioner.db import SCHEMA

ROUTERS: list = []


def start_workers(rt: Runtime, settings: ProvisionerSettings) -> None:
    assert rt.bus is not None
    relay = OutboxRelay(settings.database_url or "", SCHEMA, rt.bus)
    rt.start("outbox-relay", relay.run(), relay.stop)


def create_app(settings: ProvisionerSettings | None = None) -> FastAPI:
    settings = settings or ProvisionerSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime(settings) as rt:
            app.state.runtime = rt
            app.state.settings = settings
            start_workers(rt, settings)
            yield

    return create_service_app(title="LetsBe Provisioner", version=__version__, lifespan=lifespan, routers=ROUTERS)
