"""Fixtures of the hub's alerts tests: an app with this context's router (and, for round trips, its workers)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from hub_testing import hub_app
from letsbe_contracts import AlertRaisedV1
from letsbe_hub.alerts import endpoints
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.auth.service import create_token
from letsbe_hub.config import HubSettings
from letsbe_platform.db import unit_of_work

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def settings(database_url: str, nats_url: str, bus_namespace: str) -> HubSettings:
    return HubSettings.model_validate(
        {
            "DATABASE_URL": database_url,
            "NATS_URL": nats_url,
            "LETSBE_BUS_NAMESPACE": bus_namespace,
            "log_json": False,
            "shutdown_grace_seconds": 5,
        }
    )


@pytest.fixture
async def api(settings: HubSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with LifespanManager(hub_app(settings, routers=[endpoints.router])) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            yield client


async def token_for(sessions, *scopes: Scope, name: str = "ops-alice") -> dict[str, str]:
    async with unit_of_work(sessions) as s:
        _, plaintext = await create_token(s, name, scopes)
    return {"Authorization": f"Bearer {plaintext}"}


@pytest.fixture
async def reader(sessions) -> dict[str, str]:
    return await token_for(sessions, Scope.ALERTS_READ, name="ops-bob")


@pytest.fixture
async def writer(sessions) -> dict[str, str]:
    return await token_for(sessions, Scope.ALERTS_READ, Scope.ALERTS_WRITE)


def raised(**overrides: Any) -> AlertRaisedV1:
    values: dict[str, Any] = {
        "alert_id": uuid.uuid4(),
        "tenant_id": uuid.uuid4(),
        "rule": "disk.usage",
        "severity": "medium",
        "summary": "Disk / at 91.0 % (threshold 85 %)",
        "value": 91.0,
        "threshold": 85.0,
        "first_seen": NOW,
        "last_seen": NOW,
        "count": 1,
    }
    values.update(overrides)
    return AlertRaisedV1(**values)


def later(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)
