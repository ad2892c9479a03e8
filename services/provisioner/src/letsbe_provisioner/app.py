"""The Provisioner app factory. Routers and background workers are wired here, and only here."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import asyncssh
from fastapi import FastAPI

from letsbe_contracts import DnsReadyV1
from letsbe_contracts.events import (
    TenantAgentRegisteredV1,
    TenantKeyRotationRequestedV1,
    TenantTaskRequestedV1,
)
from letsbe_platform.bus import E
from letsbe_platform.logging import get_logger
from letsbe_platform.web import Runtime, create_service_app, runtime
from letsbe_provisioner import __version__
from letsbe_provisioner.config import ProvisionerSettings
from letsbe_provisioner.db import SCHEMA
from letsbe_provisioner.jobs import tasks
from letsbe_provisioner.jobs.handlers import (
    DURABLE,
    ROTATION_DURABLE,
    dns_ready_handler,
    key_rotation_handler,
    tenant_tasks,
)
from letsbe_provisioner.jobs.hub import HubClient
from letsbe_provisioner.jobs.rotation import Rotator
from letsbe_provisioner.jobs.secrets import SecretBox
from letsbe_provisioner.jobs.service import Pipeline

ROUTERS: list = []
log = get_logger(__name__)


def build_pipeline(rt: Runtime, settings: ProvisionerSettings) -> Pipeline:
    assert settings.hub_token is not None and settings.secrets_key is not None
    if settings.ssh_private_key is not None:
        key = asyncssh.import_private_key(settings.ssh_private_key.get_secret_value())
    else:
        assert settings.ssh_private_key_file is not None
        key = asyncssh.read_private_key(str(settings.ssh_private_key_file))
    hub = HubClient(settings.hub_url, settings.hub_token.get_secret_value(), timeout=settings.hub_timeout_seconds)
    return Pipeline(settings, rt.sessions, hub, SecretBox(settings.secrets_key.get_secret_value()), key)


def start_workers(rt: Runtime, settings: ProvisionerSettings) -> Pipeline | None:
    rt.relay_outbox(SCHEMA, poll_seconds=0.5)
    missing = settings.missing()
    if missing:
        log.warning("pipeline disabled: settings missing", missing=missing)
        return None
    pipeline = build_pipeline(rt, settings)
    options = {"concurrency": settings.max_concurrent_jobs, "ack_wait": settings.ack_wait_seconds}
    rt.consume(DURABLE, DnsReadyV1, dns_ready_handler(pipeline), **options)
    rt.start("registration-wakeups", listen_until_stopped(rt, TenantAgentRegisteredV1, pipeline.on_agent_registered))
    rotations = key_rotation_handler(Rotator(pipeline))
    rt.consume(ROTATION_DURABLE, TenantKeyRotationRequestedV1, rotations, **options)
    rt.consume(tasks.DURABLE, TenantTaskRequestedV1, tenant_tasks(pipeline).on_requested, **options)
    return pipeline


async def listen_until_stopped(rt: Runtime, event: type[E], callback: Callable[[E], None]) -> None:
    sub = await rt.bus.listen(event, callback)
    try:
        await rt.stopping.wait()
    finally:
        with contextlib.suppress(Exception):  # the connection may already be draining
            await sub.unsubscribe()


def create_app(settings: ProvisionerSettings | None = None) -> FastAPI:
    settings = settings or ProvisionerSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime(settings) as rt:
            app.state.runtime = rt
            app.state.settings = settings
            pipeline = start_workers(rt, settings)
            if pipeline is not None:
                rt.close_last(pipeline.hub.aclose)
            app.state.pipeline = pipeline
            yield

    return create_service_app(title="LetsBe Provisioner", version=__version__, lifespan=lifespan, routers=ROUTERS)
