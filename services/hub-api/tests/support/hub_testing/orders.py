"""Test fixtures for the orders, payments, catalog and notifications contexts (imported by their conftest.py).

``orders_hub`` runs :func:`hub_testing.hub_app` with only this context's workers (plus the outbox relay), so tests
observe exactly what orders do — no allocation worker moving orders behind the test's back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub_testing import hub_app
from letsbe_contracts import OrderSpec, ServerTarget
from letsbe_fakes import LoopbackServer, QuickServer
from letsbe_fakes.smtp import FakeSmtp
from letsbe_fakes.stripe import StripeFake
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.auth.service import create_token
from letsbe_hub.config import HubSettings
from letsbe_hub.orders import wiring
from letsbe_platform.db import unit_of_work
from letsbe_platform.testing import free_port

WEBHOOK_SECRET = "whsec_test_orders"


# --- external systems on loopback -------------------------------------------------------------------------------


@dataclass
class RunningStripe:
    fake: StripeFake
    url: str


@pytest.fixture(scope="session")
def _stripe_server() -> Iterator[RunningStripe]:
    fake = StripeFake(webhook_secret=WEBHOOK_SECRET)
    with LoopbackServer(fake.app) as srv:
        yield RunningStripe(fake, srv.url)


@pytest.fixture
def stripe_fake(_stripe_server: RunningStripe) -> RunningStripe:
    """The fake Stripe API on loopback, clean for this test."""
    _stripe_server.fake.reset()
    return _stripe_server


@pytest.fixture
def smtp_server() -> Iterator[FakeSmtp]:
    """A real SMTP server (aiosmtpd) on loopback that keeps what it receives."""
    with FakeSmtp() as smtp:
        yield smtp


# --- the hub -----------------------------------------------------------------------------------------------------


def orders_settings(
    database_url: str,
    nats_url: str,
    bus_namespace: str,
    stripe: RunningStripe | None,
    smtp: FakeSmtp | None,
    **extra: Any,
) -> HubSettings:
    values: dict[str, Any] = {
        "DATABASE_URL": database_url,
        "NATS_URL": nats_url,
        "LETSBE_BUS_NAMESPACE": bus_namespace,
        "log_json": False,
        "stripe_webhook_secret": WEBHOOK_SECRET,
        "sse_ping_seconds": 0.5,
        "shutdown_grace_seconds": 5,
    }
    if stripe is not None:
        values.update(stripe_secret_key=stripe.fake.api_key, stripe_api_base=stripe.url)
    if smtp is not None:
        values.update(
            smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_starttls=False, mail_from="LetsBe <hello@letsbe.test>"
        )
    return HubSettings.model_validate({**values, **extra})


@pytest.fixture
def hub_settings(
    database_url: str, nats_url: str, bus_namespace: str, stripe_fake: RunningStripe, smtp_server: FakeSmtp
) -> HubSettings:
    return orders_settings(database_url, nats_url, bus_namespace, stripe_fake, smtp_server)


@dataclass
class Hub:
    app: FastAPI
    client: httpx.AsyncClient

    @property
    def orders(self) -> wiring.OrdersRuntime:
        return self.app.state.workers


@pytest_asyncio.fixture
async def orders_hub(hub_settings: HubSettings) -> AsyncIterator[Hub]:
    app = hub_app(hub_settings, workers=wiring.start)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            yield Hub(app, client)


async def token(sessions: async_sessionmaker[AsyncSession], scopes: list[Scope], name: str = "test-operator") -> str:
    async with unit_of_work(sessions) as session:
        _, plaintext = await create_token(session, name, scopes)
    return plaintext


@pytest_asyncio.fixture
async def operator(sessions: async_sessionmaker[AsyncSession]) -> dict[str, str]:
    """Headers of a token with orders:read and orders:write."""
    return {"Authorization": f"Bearer {await token(sessions, [Scope.ORDERS_READ, Scope.ORDERS_WRITE])}"}


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """Run ``app`` on a real loopback HTTP server in this event loop (streaming responses need one)."""
    port = free_port()
    server = QuickServer(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_config=None, access_log=False)
    )
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(300):
            if server.started:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        else:
            raise TimeoutError("hub did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=15)


# --- helpers -------------------------------------------------------------------------------------------------------


def order_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "customer_name": "Acme GmbH",
        "customer_email": "owner@acme.test",
        "domain": f"acme-{uuid.uuid4().hex[:8]}.test",
        "tier": "build",
        "region": "eu",
        "tools": ["nextcloud", "ghost"],
        "automation_mode": "AUTO",
    }
    body.update(overrides)
    return body


async def post_event(
    client: httpx.AsyncClient, stripe: StripeFake, event: dict[str, Any], **sign: Any
) -> httpx.Response:
    body, headers = stripe.signed(event, **sign)
    return await client.post("/api/v1/public/stripe/webhook", content=body, headers=headers)


def sse_events(text: str) -> list[dict[str, Any]]:
    """Parse a complete SSE body into [{id, event, data}] (comments/pings skipped)."""
    out: list[dict[str, Any]] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
        if "data" in fields:
            fields["data"] = json.loads(fields["data"])
            out.append(fields)
    return out


async def insert_order(
    sessions: async_sessionmaker[AsyncSession], status: str = "PENDING_PAYMENT", **fields: Any
) -> uuid.UUID:
    """An order row in any state, written directly (test setup only; the API goes through orders.state)."""
    from letsbe_hub.orders.models import Order

    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "customer_name": "Acme GmbH",
        "customer_email": "owner@acme.test",
        "domain": f"acme-{uuid.uuid4().hex[:8]}.test",
        "tier": "build",
        "region": "eu",
        "tools": ["nextcloud", "ghost"],
        "automation_mode": "AUTO",
        "amount_cents": 4900,
        "currency": "eur",
        "created_by": "test",
        "status": status,
        **fields,
    }
    async with unit_of_work(sessions) as session:
        session.add(Order(**values))
    return values["id"]


async def count(sessions: async_sessionmaker[AsyncSession], sql: str, **params: Any) -> int:
    from sqlalchemy import text

    async with sessions() as session:
        return int((await session.execute(text(sql), params)).scalar_one())


async def published(bus: Any, subject: str) -> int:
    """How many messages of ``subject`` (un-namespaced, e.g. letsbe.order.created.v1) are in the test's stream."""
    full = bus.subject(subject)
    info = await bus.js.stream_info(bus.stream, subjects_filter=full)
    return (info.state.subjects or {}).get(full, 0)


async def outbox_drained(sessions: async_sessionmaker[AsyncSession]) -> bool:
    return await count(sessions, "SELECT count(*) FROM hub.outbox WHERE published_at IS NULL") == 0


async def consumer_idle(bus: Any, durable: str) -> bool:
    """True once the durable consumer has been handed every message of its subject and acknowledged them all."""
    info = await bus.js.consumer_info(bus.stream, durable)
    return info.num_pending == 0 and info.num_ack_pending == 0 and (info.delivered.stream_seq or 0) > 0


def server_target(provider: str = "netcup", provider_ref: str = "v2202411000000") -> ServerTarget:
    """A loopback server target, as server-allocated carries it."""
    return ServerTarget(
        server_id=uuid.uuid4(),
        provider=provider,
        provider_ref=provider_ref,
        ipv4="127.0.0.1",
        host_key_fingerprint="SHA256:" + "b" * 43,
    )


def order_spec(order: dict[str, Any]) -> OrderSpec:
    """The OrderSpec the events carry, from an order as the API returns it."""
    return OrderSpec(
        order_id=order["id"],
        domain=order["domain"],
        tier=order["tier"],
        region=order["region"],
        tools=tuple(order["tools"]),
        automation_mode=order["automation_mode"],
        customer_email=order["customer_email"],
    )
