"""The DNS app factory. Routers and background workers are wired here, and only here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from letsbe_contracts import ServerAllocatedV1, load_catalog
from letsbe_contracts.events import (
    MailReadyV1,
    TenantDecommissionedV1,
    TenantTaskRequestedV1,
)
from letsbe_dns import __version__
from letsbe_dns.acme.endpoints import router as acme_router
from letsbe_dns.acme.hub import HubAgents
from letsbe_dns.acme.service import AcmeService
from letsbe_dns.cloudflare import CloudflareDns
from letsbe_dns.config import DnsSettings
from letsbe_dns.db import SCHEMA
from letsbe_dns.records.endpoints import router as records_router
from letsbe_dns.records.handlers import (
    ON_MAIL_READY,
    ON_SERVER_ALLOCATED,
    ON_TASK_REQUESTED,
    ON_TENANT_DECOMMISSIONED,
    MailReadyHandler,
    ServerAllocatedHandler,
    TenantDecommissionedHandler,
    TenantTaskHandler,
)
from letsbe_dns.records.service import RecordsService
from letsbe_dns.verify import Verifier
from letsbe_platform.tls import client_context
from letsbe_platform.web import Runtime, create_service_app, runtime

ROUTERS: list = [acme_router, records_router]


def start_workers(rt: Runtime, settings: DnsSettings, records: RecordsService) -> None:
    rt.relay_outbox(SCHEMA)
    options = {
        "max_deliver": settings.consumer_max_deliver,
        "backoff": settings.consumer_backoff_seconds,
        "ack_wait": settings.consumer_ack_wait_seconds,
    }
    rt.consume(
        ON_SERVER_ALLOCATED,
        ServerAllocatedV1,
        ServerAllocatedHandler(records, rt.sessions, settings.consumer_max_deliver),
        concurrency=2,  # different domains in parallel; one domain is serialised by an advisory lock
        **options,
    )
    rt.consume(
        ON_TENANT_DECOMMISSIONED, TenantDecommissionedV1, TenantDecommissionedHandler(records, rt.sessions), **options
    )
    rt.consume(ON_MAIL_READY, MailReadyV1, MailReadyHandler(records, rt.sessions), **options)
    rt.consume(ON_TASK_REQUESTED, TenantTaskRequestedV1, TenantTaskHandler(records, rt.sessions), **options)


def create_app(settings: DnsSettings | None = None) -> FastAPI:
    settings = settings or DnsSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime(settings) as rt:
            provider = CloudflareDns(settings)
            rt.close_last(provider.aclose)
            hub = httpx.AsyncClient(
                base_url=settings.hub_url, timeout=settings.hub_timeout_seconds, verify=client_context()
            )
            rt.close_last(hub.aclose)
            records = RecordsService(provider, Verifier(settings), rt.sessions, settings, load_catalog())
            app.state.runtime = rt
            app.state.settings = settings
            app.state.records = records
            app.state.acme = AcmeService(records)
            app.state.hub_agents = HubAgents(hub)
            start_workers(rt, settings, records)
            yield

    return create_service_app(title="LetsBe DNS", version=__version__, lifespan=lifespan, routers=ROUTERS)
