"""The Hub's app factory. Routers and background workers of each context are wired here, and only here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from letsbe_hub import __version__, web
from letsbe_hub.alerts import endpoints as alerts
from letsbe_hub.alerts import handlers as alert_workers
from letsbe_hub.approvals import endpoints as approvals
from letsbe_hub.auth import endpoints as tokens
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.auth.service import ensure_token
from letsbe_hub.backups import endpoints as backups
from letsbe_hub.billing import endpoints as billing
from letsbe_hub.billing import wiring as billing_wiring
from letsbe_hub.catalog import endpoints as catalog
from letsbe_hub.commands import endpoints as commands
from letsbe_hub.commands import worker as command_workers
from letsbe_hub.commands.fastpath import HeartbeatFastPath
from letsbe_hub.config import HubSettings
from letsbe_hub.console import endpoints as console
from letsbe_hub.credentials import endpoints as credentials
from letsbe_hub.customers import endpoints as customers
from letsbe_hub.customers import portal
from letsbe_hub.db import SCHEMA
from letsbe_hub.lifecycle import endpoints as lifecycle
from letsbe_hub.lifecycle import worker as lifecycle_workers
from letsbe_hub.llm import endpoints as llm
from letsbe_hub.orders import endpoints as orders
from letsbe_hub.orders import wiring as orders_wiring
from letsbe_hub.relay import endpoints as relay
from letsbe_hub.rollouts import endpoints as rollouts
from letsbe_hub.rollouts import worker as rollout_workers
from letsbe_hub.servers import endpoints as servers
from letsbe_hub.servers import handlers as server_workers
from letsbe_hub.tenants import endpoints as tenants
from letsbe_hub.tenants import heartbeat as tenant_heartbeats
from letsbe_hub.webhooks import endpoints as webhooks
from letsbe_platform.db import unit_of_work
from letsbe_platform.web import Runtime, create_service_app, runtime

ROUTERS = [
    tokens.router,
    *approvals.routers,
    *tenants.routers,
    *credentials.routers,
    *commands.routers,
    rollouts.router,
    orders.router,
    webhooks.router,
    *billing.routers,
    catalog.router,
    *servers.routers,
    alerts.router,
    *llm.routers,
    *lifecycle.routers,
    *backups.routers,
    console.router,  # the operators' web console (HTML)
    *relay.routers,
    *customers.routers,
    *portal.routers,
]


def start_workers(rt: Runtime, settings: HubSettings) -> None:
    """Every background worker of the hub: the outbox relay, event consumers, periodic checks."""
    rt.relay_outbox(SCHEMA)
    tenant_heartbeats.start(rt, settings)
    command_workers.start(rt, settings)
    rollout_workers.start(rt, settings)
    orders_wiring.start(rt, settings)  # orders consumers, SSE listener, Stripe client, welcome mailer
    billing_wiring.start(rt, settings)  # Stripe Prices, dunning/suspension/decommission worker, billing emails
    server_workers.start(rt, settings)  # allocation worker, pool and migration checks
    alert_workers.start(rt, settings)  # alert store consumers, hub self-check gauges
    lifecycle_workers.start(rt, settings)  # lifecycle jobs, the snapshot planner, the migration policy


def create_app(settings: HubSettings | None = None) -> FastAPI:
    settings = settings or HubSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime(settings) as rt:
            app.state.runtime = rt
            app.state.settings = settings
            if settings.bootstrap_admin_token is not None:
                async with unit_of_work(rt.sessions) as session:
                    await ensure_token(
                        session, "bootstrap-admin", settings.bootstrap_admin_token.get_secret_value(), list(Scope)
                    )
            start_workers(rt, settings)
            yield

    app = create_service_app(
        title="LetsBe Hub API",
        version=__version__,
        description="Orders, payments, servers, tenants, agents, rollouts and alerts of the LetsBe control plane.",
        lifespan=lifespan,
        routers=ROUTERS,
        middleware=[(HeartbeatFastPath, {})],  # agents' heartbeats answered before routing
        body_limits=dict.fromkeys(llm.RELAY_PATHS, settings.llm_max_request_bytes),
    )
    web.install(app)  # security headers, HTML error pages and static files of the portal and the console
    return app
