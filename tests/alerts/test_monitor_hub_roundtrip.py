"""Monitor → hub → monitor over real NATS: an alert the monitor raises appears in the hub's API, and the operator's
acknowledgement in the hub reaches the monitor, which stops staff notifications for it."""

import uuid
from datetime import UTC, datetime

import httpx
from asgi_lifespan import LifespanManager

from hub_testing import hub_app
from hub_testing.orders import token
from hub_testing.tenants import fast_hub_settings
from letsbe_contracts import HeartbeatDetails, OrderSpec, ProvisionedV1, ServerTarget, TenantHeartbeatV1
from letsbe_hub.alerts import endpoints, handlers
from letsbe_hub.auth.scopes import Scope
from letsbe_monitor.alerts.models import Alert as MonitorAlert
from letsbe_monitor.app import create_app as create_monitor
from letsbe_monitor.config import MonitorSettings
from letsbe_monitor.tenants.models import Tenant
from letsbe_platform.testing import eventually, free_port


def provisioned_event(tid: uuid.UUID) -> ProvisionedV1:
    return ProvisionedV1(
        order=OrderSpec(
            order_id=tid,
            domain="acme.example",
            tier="build",
            region="eu",
            tools=("nextcloud",),
            automation_mode="AUTO",
            customer_email="owner@acme.example",
        ),
        server=ServerTarget(
            server_id=uuid.uuid4(),
            provider="netcup",
            provider_ref="v1",
            ipv4="203.0.113.10",
            host_key_fingerprint="SHA256:" + "A" * 43,
        ),
        tenant_id=tid,
        job_id=uuid.uuid4(),
        duration_seconds=300,
    )


def disk_heartbeat(tid: uuid.UUID, percent: float, at: datetime) -> TenantHeartbeatV1:
    details = HeartbeatDetails.model_validate(
        {
            "disk": {"total_bytes": 100, "used_bytes": int(percent), "percent": percent},
            "memory": {"total_bytes": 100, "available_bytes": 50, "percent": 50.0},
        }
    )
    return TenantHeartbeatV1(
        tenant_id=tid,
        agent_id=uuid.uuid4(),
        agent="safety-wrapper",
        domain="acme.example",
        received_at=at,
        interval_seconds=60,
        details=details,
    )


async def test_an_alert_travels_to_the_hub_and_its_acknowledgement_back(
    database_url, nats_url, bus_namespace, bus, sessions
):
    settings = fast_hub_settings(database_url, nats_url, bus_namespace, shutdown_grace_seconds=5)
    monitor_settings = MonitorSettings.model_validate(
        {
            "DATABASE_URL": database_url,
            "NATS_URL": nats_url,
            "LETSBE_BUS_NAMESPACE": bus_namespace,
            "log_json": False,
            "shutdown_grace_seconds": 5,
            # its TLS checker probes loopback (a closed port), never the real domain
            "tls_connect_host": "127.0.0.1",
            "tls_port": free_port(),
        }
    )
    headers = {"Authorization": f"Bearer {await token(sessions, [Scope.ALERTS_READ, Scope.ALERTS_WRITE], 'ops-alice')}"}
    tid = uuid.uuid4()
    async with (
        LifespanManager(create_monitor(monitor_settings)),
        LifespanManager(hub_app(settings, routers=[endpoints.router], workers=handlers.start)) as hub,
    ):
        await bus.publish(provisioned_event(tid), correlation_id=tid)

        async def watched():
            async with sessions() as s:
                tenant = await s.get(Tenant, tid)
                return tenant is not None and tenant.watched

        await eventually(watched)
        await bus.publish(disk_heartbeat(tid, 97.0, datetime.now(UTC)), correlation_id=tid)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=hub.app), base_url="http://hub") as api:

            async def listed():
                r = await api.get("/api/v1/admin/alerts", params={"tenant_id": str(tid)}, headers=headers)
                return r.json()["items"]

            [alert] = await eventually(listed)
            assert (alert["rule"], alert["severity"], alert["value"]) == ("disk.usage", "medium", 97.0)
            r = await api.post(f"/api/v1/admin/alerts/{alert['alert_id']}/acknowledge", headers=headers)
            assert r.status_code == 200

        async def acknowledged_in_monitor():
            async with sessions() as s:
                row = await s.get(MonitorAlert, uuid.UUID(alert["alert_id"]))
                return row is not None and row.acknowledged_by == "ops-alice"

        await eventually(acknowledged_in_monitor)
