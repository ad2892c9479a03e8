"""Test helpers and fixtures of the servers context (imported by tests/servers/conftest.py and bench/allocation.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

import httpx
import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub_testing import hub_app
from letsbe_contracts import AutomationMode, Envelope, Event, OrderSpec, Region, Tier, decode
from letsbe_fakes import LoopbackServer
from letsbe_fakes.hetzner import FakeHetzner
from letsbe_fakes.ssh_target import SshTarget
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.auth.service import create_token
from letsbe_hub.config import HubSettings
from letsbe_hub.db import outbox
from letsbe_hub.providers.factory import build_hetzner
from letsbe_hub.providers.hetzner import HetznerProvider
from letsbe_hub.servers import endpoints
from letsbe_hub.servers.allocation import Allocator
from letsbe_hub.servers.models import InventoryStatus, Server
from letsbe_platform.db import unit_of_work

E = TypeVar("E", bound=Event)

FINGERPRINT = "SHA256:" + "Q" * 43
HETZNER_TOKEN = "hetzner-test-token"

# Waits and polls cut to milliseconds: the behaviour is the same, the suite stays fast.
FAST = {
    "provider_retry_attempts": 3,
    "provider_backoff_seconds": 0.01,
    "provider_poll_seconds": 0.01,
    "provider_action_timeout_seconds": 5,
    "ssh_ready_timeout_seconds": 5,
    "ssh_probe_seconds": 0.05,
    "log_json": False,
}


def servers_settings(database_url: str, **overrides: Any) -> HubSettings:
    """The servers tests' hub settings: the fast timings above, then ``overrides``."""
    return HubSettings.model_validate({"DATABASE_URL": database_url, **FAST, **overrides})


def order_spec(
    tier: Tier | str = Tier.BUILD,
    region: Region | str = Region.EU,
    mode: AutomationMode | str = AutomationMode.AUTO,
    tools: tuple[str, ...] = ("nextcloud",),
) -> OrderSpec:
    oid = uuid.uuid4()
    return OrderSpec(
        order_id=oid,
        domain=f"o{oid.hex[:12]}.example.com",
        tier=tier,
        region=region,
        tools=tools,
        automation_mode=mode,
        customer_email="owner@example.com",
    )


async def add_servers(
    sessions: async_sessionmaker[AsyncSession],
    n: int,
    *,
    tier: str = "build",
    region: str = "eu",
    provider: str = "netcup",
    status: InventoryStatus = InventoryStatus.AVAILABLE,
    **values: Any,
) -> list[Server]:
    async with unit_of_work(sessions) as s:
        rows = []
        for _ in range(n):
            ref = uuid.uuid4().hex[:12]
            row = Server(
                provider=provider,
                provider_ref=ref,
                name=f"{provider}-{ref}",
                tier=tier,
                region=region,
                ipv4="127.0.0.1",
                ssh_port=22,
                ssh_user="letsbe",
                host_key_fingerprint=FINGERPRINT,
                status=status.value,
                **values,
            )
            s.add(row)
            rows.append(row)
        await s.flush()
    return rows


async def staged(sessions: async_sessionmaker[AsyncSession], kind: type[E]) -> list[tuple[Envelope, E]]:
    """The events of one type staged in the hub's outbox, oldest first."""
    async with sessions() as s:
        rows = (await s.execute(select(outbox.c.envelope).order_by(outbox.c.seq))).scalars().all()
    out = []
    for raw in rows:
        env = Envelope.model_validate(raw)
        if env.type == kind.TYPE and env.version == kind.VERSION:
            event = decode(env)
            assert isinstance(event, kind)
            out.append((env, event))
    return out


async def token(sessions: async_sessionmaker[AsyncSession], *scopes: Scope) -> dict[str, str]:
    async with unit_of_work(sessions) as s:
        _, plaintext = await create_token(s, "servers-test", scopes or list(Scope))
    return {"Authorization": f"Bearer {plaintext}"}


# --- fixtures ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def fake_hetzner() -> Iterator[tuple[FakeHetzner, str]]:
    fake = FakeHetzner(HETZNER_TOKEN, server_ipv4="127.0.0.1", action_polls=1)
    with LoopbackServer(fake.app) as srv:
        yield fake, srv.url + "/v1"


@pytest.fixture
def ssh_target() -> Iterator[SshTarget]:
    with SshTarget() as target:
        yield target


@pytest.fixture
def settings(database_url: str, fake_hetzner: tuple[FakeHetzner, str], ssh_target: SshTarget) -> HubSettings:
    return servers_settings(
        database_url,
        hetzner_api_url=fake_hetzner[1],
        hetzner_api_token=HETZNER_TOKEN,
        hetzner_ssh_keys=["letsbe-ops"],
        server_ssh_port=ssh_target.port,
    )


@pytest_asyncio.fixture
async def hetzner(settings: HubSettings) -> AsyncIterator[HetznerProvider]:
    provider = build_hetzner(settings)
    assert provider is not None
    yield provider
    await provider.aclose()


@pytest.fixture
def allocator(sessions: async_sessionmaker[AsyncSession], settings: HubSettings, hetzner: HetznerProvider) -> Allocator:
    return Allocator(sessions, settings, hetzner)


@pytest_asyncio.fixture
async def api(settings: HubSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = hub_app(settings, routers=endpoints.routers)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            yield client


@pytest_asyncio.fixture
async def admin(sessions: async_sessionmaker[AsyncSession]) -> dict[str, str]:
    return await token(sessions)
