"""Heartbeats: liveness, the heavy part stored when changed, tenant-heartbeat published once per beat."""

import asyncio
import itertools
import re
import uuid

from sqlalchemy import text

from hub_testing.tenants import enroll
from letsbe_contracts.events import TenantBackupReportedV1, TenantHeartbeatV1
from letsbe_platform.testing import eventually

DETAILS = {
    "disk": {"path": "/", "total_bytes": 100, "used_bytes": 50, "percent": 50.0},
    "memory": {"total_bytes": 100, "available_bytes": 70, "percent": 30.0},
    "containers": [{"name": "ghost", "image": "ghost@sha256:" + "d" * 64, "state": "running", "health": "healthy"}],
    "versions": {"safety-wrapper": "1.0.0", "ghost": "5.1"},
}


async def _collect(bus, event_type, durable):
    got = []

    async def handle(event, delivery):
        got.append(event)

    consumer = bus.consumer(durable, event_type, handle)
    task = asyncio.create_task(consumer.run())
    return got, consumer, task


async def test_heartbeat_records_liveness_and_publishes_one_event_per_sequence_number(hub, admin, bus, sessions):
    got, consumer, task = await _collect(bus, TenantHeartbeatV1, "test-heartbeats")
    try:
        a = await enroll(hub, admin)
        first = await hub.post(
            "/api/v1/tenant/heartbeat", json={"seq": 1, "version": "1.0.0", "details": DETAILS}, headers=a.headers
        )
        assert first.status_code == 200, first.text
        assert first.json() == {"interval_seconds": 1, "commands": [], "details_wanted": False}
        # a retry of the same beat, and an older one arriving late: counted as liveness, not published again
        for seq in (1, 0 + 1):
            r = await hub.post("/api/v1/tenant/heartbeat", json={"seq": seq, "version": "1.0.0"}, headers=a.headers)
            assert r.status_code == 200
        assert (
            await hub.post("/api/v1/tenant/heartbeat", json={"seq": 2, "version": "1.0.0"}, headers=a.headers)
        ).status_code == 200
        async with sessions() as s:
            row = (
                await s.execute(
                    text("SELECT last_seq, last_heartbeat_at FROM hub.agents WHERE id = :i"), {"i": a.agent_id}
                )
            ).one()
            components = dict((await s.execute(text("SELECT component, version FROM hub.tenant_components"))).all())
        assert row.last_seq == 2 and row.last_heartbeat_at is not None
        assert components == {"safety-wrapper": "1.0.0", "ghost": "5.1"}
        # A later beat, told apart by its heavy part: the hub publishes in order, so once its event is here any
        # event of the beats before it is here too.
        marker = {**DETAILS, "disk": {**DETAILS["disk"], "used_bytes": 60, "percent": 60.0}}
        r = await hub.post(
            "/api/v1/tenant/heartbeat", json={"seq": 3, "version": "1.0.0", "details": marker}, headers=a.headers
        )
        assert r.status_code == 200
        await eventually(lambda: any(e.details and e.details.disk.percent == 60.0 for e in got), "the later beat")
        assert len(got) == 3
        assert got[0].tenant_id == a.tenant_id and got[0].domain == a.domain and got[0].details.disk.percent == 50.0
        assert got[1].details is None
        metrics = (await hub.get("/metrics")).text
        assert 'hub_agent_heartbeats_total{outcome="repeat"}' in metrics
        assert 'route="/api/v1/tenant/heartbeat"' in metrics  # the fast path is measured like any route
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 10)


async def test_hub_asks_for_the_heavy_part_until_it_has_it(hub, admin, sessions):
    a = await enroll(hub, admin)
    r = await hub.post("/api/v1/tenant/heartbeat", json={"seq": 1, "version": "1.0.0"}, headers=a.headers)
    assert r.json()["details_wanted"] is True
    await hub.post(
        "/api/v1/tenant/heartbeat", json={"seq": 2, "version": "1.0.0", "details": DETAILS}, headers=a.headers
    )
    async with sessions() as s:
        first = (await s.execute(text("SELECT updated_at FROM hub.agent_details"))).scalar()
    # the same heavy part again is not written again
    await hub.post(
        "/api/v1/tenant/heartbeat", json={"seq": 3, "version": "1.0.0", "details": DETAILS}, headers=a.headers
    )
    r = await hub.post("/api/v1/tenant/heartbeat", json={"seq": 4, "version": "1.0.0"}, headers=a.headers)
    assert r.json()["details_wanted"] is False
    async with sessions() as s:
        assert (await s.execute(text("SELECT updated_at FROM hub.agent_details"))).scalar() == first


async def test_many_concurrent_heartbeats_are_each_answered(hub, admin, sessions):
    agents = [await enroll(hub, admin) for _ in range(5)]
    beats = [
        hub.post("/api/v1/tenant/heartbeat", json={"seq": n, "version": "1.0.0"}, headers=a.headers)
        for a in agents
        for n in range(1, 11)
    ]
    results = await asyncio.gather(*beats)
    assert {r.status_code for r in results} == {200}
    async with sessions() as s:
        seqs = (await s.execute(text("SELECT last_seq FROM hub.agents"))).scalars().all()
    assert seqs == [10] * 5


async def test_invalid_heartbeat_is_refused_without_effect(hub, admin, sessions):
    a = await enroll(hub, admin)
    bad = {**DETAILS, "disk": {**DETAILS["disk"], "percent": 180}}
    r = await hub.post(
        "/api/v1/tenant/heartbeat", json={"seq": 1, "version": "1.0.0", "details": bad}, headers=a.headers
    )
    assert r.status_code == 422
    async with sessions() as s:
        assert (await s.execute(text("SELECT last_heartbeat_at FROM hub.agents"))).scalar() is None


async def test_backup_report_is_stored_and_announced_once_per_day(hub, admin, sessions):
    a = await enroll(hub, admin)
    report = {
        "report_date": "2026-11-27",
        "checked_at": "2026-11-27T06:00:00Z",
        "status": {
            "last_run": "2026-11-27T02:15:00Z",
            "duration_seconds": 342,
            "databases": {"nextcloud": {"status": "failed", "error": "connection refused"}},
            "remote_sync": {"status": "success", "uploaded_mb": 230},
        },
    }
    assert (await hub.post("/api/v1/tenant/backup-reports", json=report, headers=a.headers)).json() == {
        "duplicate": False
    }
    assert (await hub.post("/api/v1/tenant/backup-reports", json=report, headers=a.headers)).json() == {
        "duplicate": True
    }
    async with sessions() as s:
        events = (
            (
                await s.execute(
                    text("SELECT envelope FROM hub.outbox WHERE subject = :s"), {"s": TenantBackupReportedV1.SUBJECT}
                )
            )
            .scalars()
            .all()
        )
    assert len(events) == 1
    assert events[0]["payload"]["status"]["databases"]["nextcloud"]["status"] == "failed"
    view = (await hub.get(f"/api/v1/admin/tenants/{a.tenant_id}", headers=admin)).json()
    assert view["last_backup"]["report_date"] == "2026-11-27"
    missing = {
        "report_date": "2026-11-28",
        "checked_at": "2026-11-28T06:00:00Z",
        "problem": "backup-status.json is missing",
    }
    assert (await hub.post("/api/v1/tenant/backup-reports", json=missing, headers=a.headers)).status_code == 200


async def test_every_admin_route_of_these_contexts_needs_a_token(hub):
    from letsbe_hub.app import ROUTERS

    paths = []
    for router in ROUTERS:
        for route in getattr(router, "routes", []):
            path = getattr(route, "path", "")
            if path.startswith(("/api/v1/admin/tenants", "/api/v1/admin/commands", "/api/v1/admin/rollouts")):
                for method in route.methods - {"HEAD"}:
                    paths.append((method, path))
    assert paths
    for method, path in paths:  # every {…_id} a fresh uuid, whatever the context calls it
        r = await hub.request(method, re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), path), json={})
        assert r.status_code == 401, (method, path, r.status_code)


async def test_heartbeat_errors_are_problem_json_like_every_route(hub, admin):
    """The heartbeat is answered before routing; its errors must look exactly like the other routes' errors."""
    r = await hub.post("/api/v1/tenant/heartbeat", json={"seq": 1, "version": "1.0.0"})
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    assert "re_enrol" not in r.json() and r.headers["www-authenticate"] == "Bearer"
    a = await enroll(hub, admin)
    r = await hub.post("/api/v1/tenant/heartbeat", content=b"{not json", headers=a.headers)
    assert r.status_code == 422 and r.json()["type"].endswith("/validation")
    r = await hub.post("/api/v1/tenant/heartbeat", json={"seq": 1, "version": "1.0.0", "extra": 1}, headers=a.headers)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "extra"]


async def test_heartbeats_recover_after_the_database_drops_the_hubs_connections(hub, admin, sessions):
    a = await enroll(hub, admin)
    assert (
        await hub.post("/api/v1/tenant/heartbeat", json={"seq": 1, "version": "1"}, headers=a.headers)
    ).status_code == 200
    async with sessions() as s, s.begin():
        await s.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    codes, seqs = [], itertools.count(2)

    async def answered_again() -> bool:  # an agent retrying every 0.05 s
        r = await hub.post("/api/v1/tenant/heartbeat", json={"seq": next(seqs), "version": "1"}, headers=a.headers)
        codes.append(r.status_code)
        return codes.count(200) >= 5

    await eventually(answered_again, "five heartbeats answered after the drop", timeout=30)
    assert set(codes) <= {200, 503}  # a lost connection is "retry", never a 500 or a hang
    assert codes[-5:] == [200] * 5
