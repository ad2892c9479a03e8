"""The DNS app factory. Routers and background workers are wired here, and only here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from letsbe_dns import __version__
from letsbe_dns.config import DnsSettings
from letsbe_dns.db import SCHEMA
from letsbe_platform.outbox import OutboxRelay
from letsbe_platform.web import Runtime, create_service_app, runtime

ROUTERS: list = []


def start_workers(rt: Runtime, settings: DnsSettings) -> None:
    assert rt.bus is not None
    relay = OutboxRelay(settings.database_url or "", SCHEMA, rt.bus)
    rt.start("outbox-relay", relay.run(), relay.stop)


def create_app(settings: DnsSettings | None = None) -> FastAPI:
    settings = settings or DnsSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime(settings) as rt:
            app.state.runtime = rt
            app.state.settings = settings
            start_workers(rt, settings)
            yield

    return create_service_app(title="LetsBe DNS", version=__version__, lifespan=lifespan, routers=ROUTERS)
