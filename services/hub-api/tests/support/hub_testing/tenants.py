"""Test helpers for the tenants, commands and rollouts contexts (imported by their tests' conftest.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from letsbe_hub.app import create_app
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.auth.service import create_token
from letsbe_hub.config import HubSettings
from letsbe_platform.db import unit_of_work


def fast_hub_settings(database_url: str, nats_url: str, bus_namespace: str, **overrides: Any) -> HubSettings:
    return HubSettings.model_validate(
        {
            "DATABASE_URL": database_url,
            "NATS_URL": nats_url,
            "LETSBE_BUS_NAMESPACE": bus_namespace,
            "heartbeat_interval_seconds": 1,
            "command_redeliver_seconds": 1,
            "command_sweep_seconds": 0.5,
            "rollout_tick_seconds": 0.2,
            "log_json": False,
            **overrides,
        }
    )


@pytest.fixture
def hub_settings(database_url: str, nats_url: str, bus_namespace: str) -> HubSettings:
    return fast_hub_settings(database_url, nats_url, bus_namespace)


@pytest_asyncio.fixture
async def hub(hub_settings: HubSettings) -> AsyncIterator[httpx.AsyncClient]:
    """The hub app in-process with its lifespan (workers running), and a client for it."""
    app = create_app(hub_settings)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            yield client


async def admin_token(sessions: async_sessionmaker[AsyncSession], scopes: list[Scope] | None = None) -> str:
    async with unit_of_work(sessions) as session:
        _, plaintext = await create_token(session, "test-admin", scopes or list(Scope))
    return plaintext


@pytest_asyncio.fixture
async def admin(sessions: async_sessionmaker[AsyncSession]) -> dict[str, str]:
    return {"Authorization": f"Bearer {await admin_token(sessions)}"}


@dataclass
class Enrolled:
    tenant_id: uuid.UUID
    agent_id: uuid.UUID
    api_key: str
    domain: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


async def mint_token(
    client: httpx.AsyncClient, admin: dict[str, str], tenant_id: uuid.UUID | None = None, domain: str | None = None
) -> tuple[uuid.UUID, str, str]:
    tenant_id = tenant_id or uuid.uuid4()
    domain = domain or f"t{tenant_id.hex[:10]}.example.com"
    r = await client.post(
        f"/api/v1/admin/tenants/{tenant_id}/registration-tokens",
        json={"domain": domain, "order_id": str(tenant_id), "tier": "build", "region": "eu"},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    return tenant_id, domain, r.json()["token"]


async def enroll(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    *,
    tenant_id: uuid.UUID | None = None,
    agent: str = "safety-wrapper",
    version: str = "1.0.0",
) -> Enrolled:
    tenant_id, domain, token = await mint_token(client, admin, tenant_id)
    r = await client.post(
        "/api/v1/tenant/register",
        json={"registration_token": token, "agent": agent, "version": version, "hostname": "vps1"},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    return Enrolled(tenant_id=tenant_id, agent_id=uuid.UUID(body["agent_id"]), api_key=body["api_key"], domain=domain)


class FakeFleet:
    """Agents that answer update commands through the tenant API, as ``outcome(tenant)`` says."""

    def __init__(self, hub, agents: list[Enrolled], outcome: Callable[[uuid.UUID], dict]):
        self.hub, self.agents, self.outcome = hub, agents, outcome
        self.in_flight = 0
        self.max_in_flight = 0
        self.updated: list[uuid.UUID] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    async def _agent(self, a: Enrolled) -> None:
        # A heartbeat, then a long-poll for commands of up to a second that the hub answers as soon as one is
        # queued, in turn: alive for the soak (whatever the heartbeat interval), without the nine agents polling
        # every 0.1 s that kept the hub's event loop busy and made a rollout on a loaded machine crawl.
        seq = 0
        while not self._stop.is_set():
            seq += 1
            r = await self.hub.post(
                "/api/v1/tenant/heartbeat", json={"seq": seq, "version": "1.0.0"}, headers=a.headers
            )
            assert r.status_code == 200, r.text
            r = await self.hub.get("/api/v1/tenant/commands", params={"wait": 1}, headers=a.headers, timeout=30)
            for c in r.json()["commands"]:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                await self.hub.post(f"/api/v1/tenant/commands/{c['id']}/ack", headers=a.headers)
                await asyncio.sleep(0.1)
                body = self.outcome(a.tenant_id)
                if body is not None:
                    await self.hub.post(f"/api/v1/tenant/commands/{c['id']}/result", json=body, headers=a.headers)
                    self.updated.append(a.tenant_id)
                self.in_flight -= 1

    def __enter__(self):
        self._tasks = [asyncio.create_task(self._agent(a)) for a in self.agents]
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._tasks:
            t.cancel()
