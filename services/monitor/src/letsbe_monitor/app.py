"""The Monitor app factory. Routers and background workers are wired here, and only here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from letsbe_monitor import __version__
from letsbe_monitor.alerts.handlers import AlertHandlers
from letsbe_monitor.alerts.service import AlertEngine
from letsbe_monitor.alerts.worker import Sweep
from letsbe_monitor.clock import Clock, utcnow
from letsbe_monitor.config import MonitorSettings
from letsbe_monitor.db import SCHEMA
from letsbe_monitor.notify.channels import build_channels
from letsbe_monitor.notify.worker import DeliveryWorker
from letsbe_monitor.tenants.handlers import TenantHandlers
from letsbe_monitor.tls.service import TlsChecker
from letsbe_platform.tls import client_context
from letsbe_platform.web import Runtime, create_service_app, runtime

ROUTERS: list = []


def start_workers(rt: Runtime, settings: MonitorSettings, http: httpx.AsyncClient, clock: Clock = utcnow) -> None:
    rt.relay_outbox(SCHEMA)

    engine = AlertEngine(settings)
    TenantHandlers(rt.sessions, engine, settings, clock).consume(rt)
    AlertHandlers(rt.sessions, engine).consume(rt)

    sweep = Sweep(rt.sessions, engine, settings, clock)
    rt.every("monitor-sweep", settings.sweep_interval_seconds, sweep.run_round, leased=True)
    tls = TlsChecker(rt.sessions, engine, settings, clock)
    rt.every("monitor-tls-check", settings.tls_poll_seconds, tls.once)
    deliveries = DeliveryWorker(rt.sessions, settings, build_channels(settings, http), clock)
    rt.every("monitor-deliveries", settings.delivery_poll_seconds, deliveries.once)


def create_app(settings: MonitorSettings | None = None, *, clock: Clock = utcnow) -> FastAPI:
    settings = settings or MonitorSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            httpx.AsyncClient(
                timeout=settings.http_timeout_seconds, follow_redirects=False, verify=client_context()
            ) as http,
            runtime(settings) as rt,
        ):
            app.state.runtime = rt
            app.state.settings = settings
            start_workers(rt, settings, http, clock)
            yield

    return create_service_app(title="LetsBe Monitor", version=__version__, lifespan=lifespan, routers=ROUTERS)
