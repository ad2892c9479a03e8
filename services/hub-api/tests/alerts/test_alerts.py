"""The hub's alerts: stored from alert-raised / alert-resolved, listed, acknowledged and silenced by operators, with
the operator's action sent on to the monitor; and the hub health summary (§9.3)."""

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select

from letsbe_contracts import AlertResolvedV1, Envelope
from letsbe_hub.alerts.handlers import AlertHandlers, NotRaisedYet
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.db import outbox
from letsbe_platform.db import unit_of_work
from letsbe_platform.metrics import BACKGROUND_TASK_LAST_SUCCESS

from .conftest import NOW, later, raised, token_for


async def store(sessions, *events):
    handlers = AlertHandlers(sessions)
    for event in events:
        if isinstance(event, AlertResolvedV1):
            await handlers.on_resolved(event, None)
        else:
            await handlers.on_raised(event, None)


async def staged(sessions, type_):
    async with sessions() as s:
        rows = (await s.execute(select(outbox.c.envelope).order_by(outbox.c.seq))).scalars().all()
    return [Envelope.model_validate(r) for r in rows if r["type"] == type_]


def resolved_of(event, at=None):
    return AlertResolvedV1(
        alert_id=event.alert_id,
        tenant_id=event.tenant_id,
        rule=event.rule,
        resolved_at=at or later(120),
        summary="Disk / back to 70.0 %",
    )


async def test_raised_and_resolved_events_keep_the_alert_current_in_any_order(sessions, api, reader):
    first = raised()
    refreshed = first.model_copy(update={"count": 5, "last_seen": later(300), "value": 93.0})
    await store(sessions, first, refreshed, first)  # the stale copy arriving last changes nothing
    alert = (await api.get(f"/api/v1/admin/alerts/{first.alert_id}", headers=reader)).json()
    assert (alert["status"], alert["count"], alert["value"]) == ("open", 5, 93.0)
    assert datetime.fromisoformat(alert["first_seen"]) == NOW

    await store(sessions, resolved_of(first), resolved_of(first), refreshed)  # redelivered; then a late raise
    alert = (await api.get(f"/api/v1/admin/alerts/{first.alert_id}", headers=reader)).json()
    assert alert["status"] == "resolved" and alert["resolved_summary"] == "Disk / back to 70.0 %"

    orphan = raised()
    with pytest.raises(NotRaisedYet):  # resolved overtook raised: the consumer retries it shortly
        await store(sessions, resolved_of(orphan))
    await store(sessions, orphan, resolved_of(orphan))
    assert (await api.get(f"/api/v1/admin/alerts/{orphan.alert_id}", headers=reader)).json()["status"] == "resolved"


async def test_list_filters_and_pages_newest_first(sessions, api, reader):
    tenant = uuid.uuid4()
    events = [raised(tenant_id=tenant, last_seen=later(i), rule=f"rule.{i}") for i in range(5)]
    events.append(raised(severity="hard", rule="heartbeat.stale"))
    await store(sessions, *events, resolved_of(events[0]))

    page = (await api.get("/api/v1/admin/alerts", params={"tenant_id": str(tenant), "limit": 2}, headers=reader)).json()
    seen = [a["rule"] for a in page["items"]]
    while page["next_cursor"]:
        page = (
            await api.get(
                "/api/v1/admin/alerts",
                headers=reader,
                params={"tenant_id": str(tenant), "limit": 2, "cursor": page["next_cursor"]},
            )
        ).json()
        seen += [a["rule"] for a in page["items"]]
    assert seen == ["rule.4", "rule.3", "rule.2", "rule.1"]  # open only by default; newest first (as stored)

    hard = (await api.get("/api/v1/admin/alerts", params={"severity": "hard"}, headers=reader)).json()["items"]
    assert [a["rule"] for a in hard] == ["heartbeat.stale"]
    everything = (await api.get("/api/v1/admin/alerts", params={"status": "all"}, headers=reader)).json()["items"]
    assert len(everything) == 6
    bad = await api.get("/api/v1/admin/alerts", params={"cursor": "not-a-cursor"}, headers=reader)
    assert bad.status_code == 400 and bad.headers["content-type"] == "application/problem+json"


async def test_acknowledge_is_stored_once_and_sent_to_the_monitor_once(sessions, api, writer):
    event = raised()
    await store(sessions, event)
    for _ in range(2):
        r = await api.post(f"/api/v1/admin/alerts/{event.alert_id}/acknowledge", json={"note": "on it"}, headers=writer)
        assert r.status_code == 200
    body = r.json()
    assert body["acknowledged_by"] == "ops-alice" and body["ack_note"] == "on it"
    [ack] = await staged(sessions, "alert-acknowledged")
    assert ack.payload["alert_id"] == str(event.alert_id) and ack.payload["acknowledged_by"] == "ops-alice"
    assert ack.correlation_id == str(event.tenant_id)

    unknown = await api.post(f"/api/v1/admin/alerts/{uuid.uuid4()}/acknowledge", headers=writer)
    assert unknown.status_code == 404
    await store(sessions, resolved_of(event))
    other = raised()
    await store(sessions, other, resolved_of(other))
    late = await api.post(f"/api/v1/admin/alerts/{other.alert_id}/acknowledge", headers=writer)
    assert late.status_code == 409 and late.json()["type"].endswith("/conflict")


async def test_silence_until_a_time_and_lift_it(sessions, api, writer):
    event = raised()
    await store(sessions, event)
    url = f"/api/v1/admin/alerts/{event.alert_id}/silence"
    for until in (datetime.now(UTC) - timedelta(minutes=1), datetime.now(UTC) + timedelta(days=31), "tomorrow"):
        r = await api.post(url, json={"until": str(until)}, headers=writer)
        assert r.status_code == 422, until
    assert await staged(sessions, "alert-silenced") == []  # a refused request changes nothing

    until = (datetime.now(UTC) + timedelta(hours=4)).replace(microsecond=0)
    r = await api.post(url, json={"until": until.isoformat(), "note": "planned maintenance"}, headers=writer)
    assert r.status_code == 200 and datetime.fromisoformat(r.json()["silenced_until"]) == until
    assert r.json()["silence_note"] == "planned maintenance"
    r = await api.delete(url, headers=writer)
    assert r.status_code == 200 and r.json()["silenced_until"] is None and r.json()["silence_note"] is None
    sent = [e.payload["silenced_until"] for e in await staged(sessions, "alert-silenced")]
    assert [datetime.fromisoformat(sent[0]), sent[1]] == [until, None]


async def test_every_alerts_route_needs_the_right_scope(sessions, api, reader):
    event = raised()
    await store(sessions, event)
    routes = [
        ("GET", "/api/v1/admin/alerts", None, Scope.ALERTS_READ),
        ("GET", f"/api/v1/admin/alerts/{event.alert_id}", None, Scope.ALERTS_READ),
        ("GET", "/api/v1/admin/health", None, Scope.ALERTS_READ),
        ("POST", f"/api/v1/admin/alerts/{event.alert_id}/acknowledge", {}, Scope.ALERTS_WRITE),
        (
            "POST",
            f"/api/v1/admin/alerts/{event.alert_id}/silence",
            {"until": later(3600).isoformat()},
            Scope.ALERTS_WRITE,
        ),
        ("DELETE", f"/api/v1/admin/alerts/{event.alert_id}/silence", None, Scope.ALERTS_WRITE),
    ]
    orders_only = await token_for(sessions, Scope.ORDERS_READ)
    for method, path, body, scope in routes:
        assert (await api.request(method, path, json=body)).status_code == 401, path
        assert (
            await api.request(method, path, json=body, headers={"Authorization": "Bearer lbh_nope"})
        ).status_code == 401
        assert (await api.request(method, path, json=body, headers=orders_only)).status_code == 403, path
        with_scope = await token_for(sessions, scope)
        assert (await api.request(method, path, json=body, headers=with_scope)).status_code == 200, path
    assert (await api.post(f"/api/v1/admin/alerts/{event.alert_id}/acknowledge", headers=reader)).status_code == 403


async def test_health_summary_reports_pool_backlog_jobs_and_disk(sessions, api, reader):
    r = await api.get("/api/v1/admin/health", headers=reader)
    assert r.status_code == 200
    health = r.json()
    assert health["database"]["ok"] and health["database"]["pool"]["max_connections"] >= 1
    assert health["outbox"]["unpublished"] == 0 and health["disk"]["total_bytes"] > 0
    assert health["open_alerts"] == {"soft": 0, "medium": 0, "hard": 0}

    await store(sessions, raised(severity="hard"))
    async with unit_of_work(sessions) as s:  # an event stuck for 5 minutes: the relay is not publishing
        await s.execute(
            insert(outbox).values(
                event_id=uuid.uuid4(),
                subject="letsbe.x.v1",
                envelope={},
                created_at=datetime.now(UTC) - timedelta(minutes=5),
            )
        )
    BACKGROUND_TASK_LAST_SUCCESS.labels("test-nightly-job").set(time.time() - 7200)
    BACKGROUND_TASK_LAST_SUCCESS.labels("test-busy-job").set_to_current_time()
    try:
        health = (await api.get("/api/v1/admin/health", headers=reader)).json()
    finally:
        BACKGROUND_TASK_LAST_SUCCESS.remove("test-nightly-job")
        BACKGROUND_TASK_LAST_SUCCESS.remove("test-busy-job")
    assert health["status"] == "degraded" and health["open_alerts"]["hard"] == 1
    assert health["outbox"]["unpublished"] == 1 and health["outbox"]["oldest_age_seconds"] >= 299
    jobs = {j["task"]: j["stale"] for j in health["jobs"]}
    assert jobs["test-nightly-job"] is True and jobs["test-busy-job"] is False
    assert any("outbox backlog" in p for p in health["problems"])
    assert any("test-nightly-job" in p for p in health["problems"])
