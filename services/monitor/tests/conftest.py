"""Shared pieces of the monitor's tests: settings, a movable clock, and builders of the events it consumes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from letsbe_contracts import OrderSpec, ProvisionedV1, ServerTarget, TenantHeartbeatV1
from letsbe_contracts.events import HeartbeatDetails
from letsbe_monitor.alerts.models import Alert
from letsbe_monitor.alerts.service import AlertEngine
from letsbe_monitor.config import MonitorSettings
from letsbe_monitor.db import outbox
from letsbe_monitor.notify.models import Delivery
from letsbe_monitor.tenants import service as tenants
from letsbe_platform.db import unit_of_work

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime = T0):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_settings(database_url: str) -> Callable[..., MonitorSettings]:
    def make(**overrides: Any) -> MonitorSettings:
        return MonitorSettings.model_validate({"DATABASE_URL": database_url, "log_json": False, **overrides})

    return make


@pytest.fixture
def settings(make_settings) -> MonitorSettings:
    return make_settings()


def order(tenant_id: uuid.UUID, domain: str = "example.com", tools: tuple[str, ...] = ("nextcloud",)) -> OrderSpec:
    return OrderSpec(
        order_id=tenant_id,
        domain=domain,
        tier="build",
        region="eu",
        tools=tools,
        automation_mode="AUTO",
        customer_email="owner@example.com",
    )


def provisioned(tenant_id: uuid.UUID, domain: str = "example.com", tools: tuple[str, ...] = ("nextcloud",)):
    server = ServerTarget(
        server_id=uuid.uuid4(),
        provider="netcup",
        provider_ref="v1",
        ipv4="203.0.113.10",
        host_key_fingerprint="SHA256:" + "A" * 43,
    )
    return ProvisionedV1(
        order=order(tenant_id, domain, tools),
        server=server,
        tenant_id=tenant_id,
        job_id=uuid.uuid4(),
        duration_seconds=300,
    )


def details(disk: float = 40, memory: float = 50, containers: tuple[dict, ...] = (), backup: dict | None = None):
    return HeartbeatDetails.model_validate(
        {
            "disk": {"total_bytes": 1000, "used_bytes": int(disk * 10), "percent": disk},
            "memory": {"total_bytes": 1000, "available_bytes": int(1000 - memory * 10), "percent": memory},
            "containers": list(containers),
            "backup": backup,
        }
    )


def heartbeat(
    tenant_id: uuid.UUID,
    at: datetime,
    *,
    interval: int = 60,
    det: HeartbeatDetails | None = None,
    agent: str = "safety-wrapper",
    domain: str = "example.com",
) -> TenantHeartbeatV1:
    return TenantHeartbeatV1(
        tenant_id=tenant_id,
        agent_id=uuid.uuid4(),
        agent=agent,
        domain=domain,
        received_at=at,
        interval_seconds=interval,
        details=det,
    )


class Monitor:
    """Drives the monitor's services directly (no bus) against the test's database, on a fake clock."""

    def __init__(self, sessions, settings: MonitorSettings, clock: FakeClock):
        self.sessions, self.settings, self.clock = sessions, settings, clock
        self.engine = AlertEngine(settings)

    async def provision(self, tenant_id: uuid.UUID | None = None, **kw: Any) -> uuid.UUID:
        tenant_id = tenant_id or uuid.uuid4()
        async with unit_of_work(self.sessions) as s:
            await tenants.record_provisioned(s, self.engine, self.settings, provisioned(tenant_id, **kw), self.clock())
        return tenant_id

    async def beat(self, tenant_id: uuid.UUID, det: HeartbeatDetails | None = None, **kw: Any):
        async with unit_of_work(self.sessions) as s:
            return await tenants.record_heartbeat(
                s, self.engine, self.settings, heartbeat(tenant_id, self.clock(), det=det, **kw), self.clock()
            )

    async def alerts(self, rule: str | None = None, *, open_only: bool = False) -> list[Alert]:
        async with self.sessions() as s:
            stmt = select(Alert).order_by(Alert.created_at, Alert.first_seen)
            if rule:
                stmt = stmt.where(Alert.rule == rule)
            if open_only:
                stmt = stmt.where(Alert.resolved_at.is_(None))
            return list((await s.scalars(stmt)).all())

    async def events(self, type_: str | None = None) -> list[dict]:
        async with self.sessions() as s:
            rows = (await s.execute(select(outbox.c.envelope).order_by(outbox.c.seq))).scalars().all()
        return [r for r in rows if type_ is None or r["type"] == type_]

    async def deliveries(self) -> list[Delivery]:
        async with self.sessions() as s:
            return list((await s.scalars(select(Delivery).order_by(Delivery.created_at))).all())


@pytest.fixture
def monitor(sessions, settings, clock) -> Monitor:
    return Monitor(sessions, settings, clock)
