"""Fixtures for the DNS service: the Cloudflare fake (HTTP + authoritative DNS on loopback), settings, the app.

Real Postgres and NATS come from the platform plugin; Cloudflare is the loopback fake from letsbe_fakes, reached
through the real SDK; verification really queries the fake's DNS server.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse
from sqlalchemy import text

from letsbe_contracts import Envelope, OrderSpec, ServerAllocatedV1, ServerTarget
from letsbe_contracts.events import MailReadyV1
from letsbe_dns.app import create_app
from letsbe_dns.config import DnsSettings
from letsbe_fakes import LoopbackServer
from letsbe_fakes.cloudflare import FakeAuthoritativeDns, FakeCloudflare
from letsbe_platform.bus import Bus
from letsbe_platform.testing import eventually

DOMAIN = "example.com"
FINGERPRINT = "SHA256:" + "A" * 43


@dataclass
class CloudflareStack:
    fake: FakeCloudflare
    api_url: str
    dns: FakeAuthoritativeDns


@pytest.fixture
def cloudflare() -> Iterator[CloudflareStack]:
    fake = FakeCloudflare()
    fake.add_zone(DOMAIN)
    with LoopbackServer(fake.app) as srv, fake.dns_server() as dns_server:
        yield CloudflareStack(fake=fake, api_url=srv.url + "/client/v4", dns=dns_server)


@pytest.fixture
def make_settings(
    database_url: str, nats_url: str, bus_namespace: str, cloudflare: CloudflareStack
) -> Callable[..., DnsSettings]:
    def make(**overrides: Any) -> DnsSettings:
        values: dict[str, Any] = {
            "DATABASE_URL": database_url,
            "NATS_URL": nats_url,
            "LETSBE_BUS_NAMESPACE": bus_namespace,
            "cloudflare_api_token": cloudflare.fake.token,
            "cloudflare_base_url": cloudflare.api_url,
            "cloudflare_max_retries": 2,
            "nameserver": "127.0.0.1",
            "nameserver_port": cloudflare.dns.port,
            "verify_timeout_seconds": 5.0,
            "verify_interval_seconds": 0.1,
            "dns_query_timeout_seconds": 1.0,
            "consumer_max_deliver": 3,
            "consumer_backoff_seconds": (0.2,),
            "acme_visible_timeout_seconds": 5.0,
            "log_json": False,
            # Tests are done when they stop the app: do not wait for the consumers' long polls to time out.
            "shutdown_grace_seconds": 0,
        }
        values.update(overrides)
        return DnsSettings.model_validate(values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., DnsSettings]) -> DnsSettings:
    return make_settings()


@pytest_asyncio.fixture
async def app(settings: DnsSettings) -> AsyncIterator[FastAPI]:
    """The DNS service in-process with its lifespan (consumers, relay) running against real Postgres and NATS."""
    application = create_app(settings)
    async with LifespanManager(application, startup_timeout=30, shutdown_timeout=30):
        yield application


@pytest_asyncio.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dns") as c:
        yield c


def order_spec(*tools: str, domain: str = DOMAIN, zone_id: str | None = None) -> OrderSpec:
    return OrderSpec(
        order_id=uuid.uuid4(),
        domain=domain,
        tier="build",
        region="eu",
        tools=tools,
        automation_mode="AUTO",
        customer_email="owner@example.com",
        cloudflare_zone_id=zone_id,
    )


def server_target(ipv4: str = "127.0.0.10", ipv6: str | None = None) -> ServerTarget:
    return ServerTarget(
        server_id=uuid.uuid4(),
        provider="hetzner",
        provider_ref="4711",
        ipv4=ipv4,
        ipv6=ipv6,
        host_key_fingerprint=FINGERPRINT,
    )


def server_allocated(*tools: str, ipv4: str = "127.0.0.10", ipv6: str | None = None, **kw: Any) -> ServerAllocatedV1:
    return ServerAllocatedV1(order=order_spec(*tools, **kw), server=server_target(ipv4, ipv6))


def dkim_public_key() -> str:
    """A fresh RSA key's p= value (base64 DER SubjectPublicKeyInfo), as the provisioner sends it."""
    der = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return base64.b64encode(der).decode()


def mail_ready(allocated: ServerAllocatedV1, selector: str = "letsbe", key: str | None = None) -> MailReadyV1:
    """What the provisioner emits once the tenant's Stalwart runs (with ``provisioned``)."""
    return MailReadyV1(
        order=allocated.order,
        server=allocated.server,
        tenant_id=allocated.order.order_id,
        dkim_selector=selector,
        dkim_public_key=key or dkim_public_key(),
    )


async def handled(engine: Any, consumer: str) -> int:
    """How many events ``consumer`` has finished (its inbox claims): a handler's work is done when this moves."""
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT count(*) FROM dns.inbox WHERE consumer = :c"), {"c": consumer})
        return int(rows.scalar_one())


class Events:
    """Everything published on the test's stream, decoded; ``wait`` for what a test expects."""

    def __init__(self, bus: Bus):
        self.bus = bus
        self.seen: list[Envelope] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Events:
        sub = await self.bus.js.subscribe(f"{self.bus.namespace}.>", stream=self.bus.stream, ordered_consumer=True)

        async def pump() -> None:
            async for msg in sub.messages:
                self.seen.append(Envelope.model_validate_json(msg.data))

        self._sub = sub
        self._task = asyncio.create_task(pump())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._sub.unsubscribe()

    def of(self, type_: str, correlation_id: str | None = None) -> list[Envelope]:
        return [
            e for e in self.seen if e.type == type_ and (correlation_id is None or e.correlation_id == correlation_id)
        ]

    async def wait(
        self, type_: str, correlation_id: str | None = None, n: int = 1, timeout: float = 15.0
    ) -> list[Envelope]:
        def enough() -> list[Envelope] | None:
            found = self.of(type_, correlation_id)
            return found if len(found) >= n else None

        return await eventually(enough, f"{n} {type_} event(s)", timeout=timeout, every=0.02)


@pytest_asyncio.fixture
async def events(bus: Bus) -> AsyncIterator[Events]:
    e = await Events(bus).start()
    yield e
    await e.stop()


class HubMeStandIn:
    """A stand-in of OUR OWN hub's contract, just GET /api/v1/tenant/me (interfaces.md), served on loopback.

    The real route lives in services/hub-api (tenants context); this keeps the DNS tests independent of it.
    """

    def __init__(self) -> None:
        self.agents: dict[str, dict[str, str]] = {}
        self.calls = 0
        self.app = FastAPI()

        @self.app.get("/api/v1/tenant/me")
        async def me(authorization: str | None = Header(default=None)) -> JSONResponse:
            self.calls += 1
            key = (authorization or "").removeprefix("Bearer ").strip()
            principal = self.agents.get(key)
            if principal is None:
                return JSONResponse(
                    {"type": "about:blank", "title": "Authentication required", "status": 401, "re_enrol": True},
                    status_code=401,
                    media_type="application/problem+json",
                )
            return JSONResponse(principal)

    def enrol(self, domain: str, tenant_id: uuid.UUID | None = None) -> tuple[str, uuid.UUID]:
        key = "lbk_" + uuid.uuid4().hex
        tenant = tenant_id or uuid.uuid4()
        self.agents[key] = {
            "tenant_id": str(tenant),
            "agent_id": str(uuid.uuid4()),
            "agent": "safety-wrapper",
            "domain": domain,
        }
        return key, tenant


@pytest.fixture
def hub() -> Iterator[tuple[HubMeStandIn, str]]:
    stand_in = HubMeStandIn()
    with LoopbackServer(stand_in.app) as srv:
        yield stand_in, srv.url


class Kit:
    """Builders the tests share (test modules cannot import each other under --import-mode=importlib)."""

    domain = DOMAIN
    order_spec = staticmethod(order_spec)
    server_target = staticmethod(server_target)
    server_allocated = staticmethod(server_allocated)
    mail_ready = staticmethod(mail_ready)
    handled = staticmethod(handled)
    hub_stand_in = HubMeStandIn


@pytest.fixture
def kit() -> Kit:
    return Kit()
