"""The console over HTTP (no browser): sign-in, sessions, CSRF, framing, scopes, escaping, and the actor it records.

The browser tests (test_console_browser.py) drive the same pages in Chromium, with live streams."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager
from sqlalchemy import select

from hub_testing.console import TOTP_KEY, Account, csrf_of, make_operator, sign_in
from hub_testing.orders import order_body
from hub_testing.tenants import enroll
from letsbe_contracts import AlertRaisedV1, AlertSeverity
from letsbe_hub.alerts import repository as alerts_repo
from letsbe_hub.app import create_app
from letsbe_hub.approvals import repository as approvals_repo
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.config import HubSettings
from letsbe_hub.lifecycle.models import LifecycleJob
from letsbe_hub.operators import service as operators_service
from letsbe_hub.orders import repository as orders_repo
from letsbe_hub.web.sessions import OPERATOR, WebSession
from letsbe_platform.db import unit_of_work

HUB = "https://hub"
ORIGIN = {"Origin": HUB}
XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture
def settings(database_url: str, nats_url: str, bus_namespace: str) -> HubSettings:
    return HubSettings.model_validate({
        "DATABASE_URL": database_url, "NATS_URL": nats_url, "LETSBE_BUS_NAMESPACE": bus_namespace,
        "log_json": False, "operator_totp_key": TOTP_KEY, "public_url": HUB,
        "trusted_proxies": ["10.0.0.0/8"],  # the hub's nginx, for the tests that come through it
    })


@pytest_asyncio.fixture
async def app(settings: HubSettings):
    app = create_app(settings)  # the whole hub: the orders API it uses for test data needs its workers
    # The app itself, not manager.app: that one hands every request the same state dict (uvicorn copies it per
    # request), so request.state would leak from one request into the next.
    async with LifespanManager(app):
        yield app


def client_for(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=HUB)


@pytest_asyncio.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as c:
        yield c


@pytest_asyncio.fixture
async def jane(sessions) -> Account:
    return await make_operator(sessions, "jane")


async def signed_in(client: httpx.AsyncClient, account: Account) -> str:
    r = await sign_in(client, account, HUB)
    assert r.status_code == 303 and r.headers["location"] == "/console/", r.text
    page = await client.get("/console/")
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


async def test_pages_need_a_session_and_sign_in_needs_password_and_code(client, jane):
    r = await client.get("/console/orders?status=FAILED")
    assert r.status_code == 303
    assert r.headers["location"] == "/console/sign-in?next=%2Fconsole%2Forders%3Fstatus%3DFAILED"
    page = await client.get(r.headers["location"])
    assert page.status_code == 200 and 'name="code"' in page.text
    assert 'value="/console/orders?status=FAILED"' in page.text

    wrong = await client.post("/console/sign-in", headers=ORIGIN,
                              data={"name": "jane", "password": jane.password, "code": "000000"})
    assert wrong.status_code == 401 and "Wrong name, password or code." in wrong.text
    assert OPERATOR.cookie not in client.cookies
    # sign-in itself refuses another site's form (login CSRF)
    evil = await client.post("/console/sign-in", headers={"Origin": "https://evil.example"},
                             data={"name": "jane", "password": jane.password, "code": jane.code()})
    assert evil.status_code == 403 and OPERATOR.cookie not in client.cookies

    r = await client.post("/console/sign-in", headers=ORIGIN, data={
        "name": "jane", "password": jane.password, "code": jane.code(), "next": "/console/orders?status=FAILED"})
    assert r.status_code == 303 and r.headers["location"] == "/console/orders?status=FAILED"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" in cookie and "Path=/console" in cookie
    assert (await client.get("/console/orders")).status_code == 200


async def test_failed_sign_ins_hold_back_the_browser_that_made_them_on_every_replica_not_everyone_behind_nginx(
    app, settings, jane
):
    """Every request reaches a hub replica from the hub's nginx (one private peer, a trusted proxy); the client is the
    browser nginx names. The failures are counted in Postgres: a guesser spreading its tries over two replicas is held
    back on both."""
    replica = create_app(settings)
    async with LifespanManager(replica):
        via_nginx = [
            httpx.AsyncClient(transport=httpx.ASGITransport(app=a, client=("10.0.0.5", 40000)), base_url=HUB)
            for a in (app, replica)
        ]

        async def attempt(browser: str, name: str, code: str, hub: int = 0) -> int:
            form = {"name": name, "password": jane.password, "code": code}
            headers = {**ORIGIN, "X-Forwarded-For": f"192.0.2.1, {browser}"}  # nginx appends what it saw
            r = await via_nginx[hub].post("/console/sign-in", headers=headers, data=form)
            return r.status_code

        guesser, operator = "203.0.113.66", "198.51.100.7"
        limit = operators_service.MAX_FAILURES_PER_CLIENT
        assert [await attempt(guesser, f"guess{i}", "000000", i % 2) for i in range(limit)] == [401] * limit
        for hub in (0, 1):  # even with the right password and code
            assert await attempt(guesser, "jane", jane.code(), hub) == 429
        assert await attempt(operator, "jane", jane.code(), 1) == 303
        for client in via_nginx:
            await client.aclose()


async def test_next_never_leaves_the_console(client, sessions):
    for target in ["https://evil.example/", "//evil.example/console/", "/console/\\\\evil", "/api/v1/admin/orders",
                   "/console/\r\nSet-Cookie: x=1", "/console/\tx", "/console/\u2028x"]:
        account = await make_operator(sessions, f"op{uuid.uuid4().hex[:8]}")
        r = await client.post("/console/sign-in", headers=ORIGIN, data={
            "name": account.name, "password": account.password, "code": account.code(), "next": target})
        assert r.status_code == 303 and r.headers["location"] == "/console/", target


async def test_a_session_cookie_planted_before_sign_in_is_never_promoted(app, client, jane, sessions):
    """Session fixation: the attacker's cookie (their own live session) is revoked when the victim signs in, and
    the victim gets a new token the attacker never saw."""
    attacker = await make_operator(sessions, "mallory", [Scope.ORDERS_READ])
    async with client_for(app) as theirs:
        await signed_in(theirs, attacker)
        planted = theirs.cookies[OPERATOR.cookie]
    client.cookies.set(OPERATOR.cookie, planted, domain="hub", path="/console")
    r = await sign_in(client, jane, HUB)
    assert r.status_code == 303
    fresh = r.cookies[OPERATOR.cookie]
    assert fresh != planted
    async with client_for(app) as theirs:
        theirs.cookies.set(OPERATOR.cookie, planted, domain="hub", path="/console")
        assert (await theirs.get("/console/")).status_code == 303  # the planted session is over
    page = await client.get("/console/")
    assert page.status_code == 200 and ">jane<" in page.text


async def test_every_console_post_needs_the_token_and_this_origin(client, jane, sessions):
    token = await signed_in(client, jane)
    alert_id = await raise_alert(sessions, "disk.full", "disk full")
    path = f"/console/alerts/{alert_id}/acknowledge"
    for headers, data in [
        (ORIGIN, {"note": "mine"}),  # no token
        (ORIGIN, {"note": "mine", "csrf_token": "x" * 43}),  # wrong token
        ({"Origin": "https://evil.example"}, {"note": "mine", "csrf_token": token}),  # right token, other site
        ({}, {"note": "mine", "csrf_token": token}),  # neither Origin nor Referer
    ]:
        r = await client.post(path, data=data, headers=headers)
        assert r.status_code == 403 and "text/html" in r.headers["content-type"], r.text
    assert (await alert(sessions, alert_id)).acknowledged_at is None
    r = await client.post(path, data={"note": "mine", "csrf_token": token}, headers=ORIGIN)
    assert r.status_code == 303
    assert (await alert(sessions, alert_id)).acknowledged_by == "operator:jane"


async def test_console_pages_may_not_be_framed(client, jane):
    await signed_in(client, jane)
    for path in ["/console/sign-in", "/console/", "/console/orders", "/console/alerts", "/console/rollouts"]:
        r = await client.get(path)
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"], path
        assert r.headers["x-frame-options"] == "DENY" and r.headers["cache-control"] == "no-store", path


async def test_an_account_without_the_scope_gets_a_403_page_and_changes_nothing(client, sessions, admin):
    reader = await make_operator(sessions, "reader", [Scope.ORDERS_READ, Scope.ALERTS_READ])
    token = await signed_in(client, reader)
    alert_id = await raise_alert(sessions, "disk.full", "disk full")
    r = await client.post(f"/console/alerts/{alert_id}/acknowledge", data={"note": "x", "csrf_token": token},
                          headers=ORIGIN)
    assert r.status_code == 403 and "alerts:write" in r.text and "text/html" in r.headers["content-type"]
    assert (await alert(sessions, alert_id)).acknowledged_at is None
    assert (await client.get("/console/rollouts")).status_code == 403
    page = await client.get("/console/alerts")
    assert page.status_code == 200 and "Acknowledge" not in page.text


async def test_user_and_tenant_data_is_escaped_on_every_page(client, jane, sessions, admin):
    """XSS: a customer's name and email, log lines, alert texts and an approval's preview are shown as text."""
    token = await signed_in(client, jane)
    r = await client.post("/api/v1/admin/orders", headers=admin,
                          json=order_body(customer_name=XSS, domain="xss.example.com"))
    assert r.status_code == 201, r.text
    order_id = uuid.UUID(r.json()["id"])
    async with unit_of_work(sessions) as session:
        await orders_repo.insert_progress(session, order_id=order_id, job_id=uuid.uuid4(), kind="log", step=1,
                                          dedup_key=f"log:{order_id}:1", payload={"seq": 1, "line": XSS, "step": 1},
                                          at=datetime.now(UTC))
        await approvals_repo.insert_pending(session, {
            "tenant_id": uuid.uuid4(), "agent_id": uuid.uuid4(), "tool": "ghost", "action": "posts.delete",
            "risk_class": "CRITICAL_RED", "args_hash": "a" * 64, "args_preview": {"title": XSS},
            "reasons": [XSS], "expires_at": datetime.now(UTC) + timedelta(minutes=15)})
    await raise_alert(sessions, "disk.full", XSS)
    pages = {
        "/console/orders": 1, f"/console/orders/{order_id}": 2, "/console/alerts": 1, "/console/approvals": 1,
        "/console/orders?q=" + XSS: 0,
    }
    for path, expected in pages.items():
        page = await client.get(path)
        assert page.status_code == 200, (path, page.text)
        assert "<script>alert" not in page.text and "<img src=x" not in page.text, path
        assert page.text.count("&lt;script&gt;alert(") >= expected, path
    # a cancel with a hostile reason is recorded as given and shown escaped
    r = await client.post(f"/console/orders/{order_id}/cancel", data={"reason": XSS, "csrf_token": token},
                          headers=ORIGIN)
    assert r.status_code == 303
    page = await client.get(f"/console/orders/{order_id}")
    assert "<script>alert" not in page.text and "operator:jane" in page.text


async def test_actions_record_the_operator_as_the_actor(client, jane, sessions, admin):
    token = await signed_in(client, jane)
    r = await client.post("/api/v1/admin/orders", headers=admin, json=order_body(domain="act.example.com"))
    order_id = r.json()["id"]
    r = await client.post(f"/console/orders/{order_id}/cancel", data={"reason": "customer asked", "csrf_token": token},
                          headers=ORIGIN)
    assert r.status_code == 303 and r.headers["location"] == f"/console/orders/{order_id}"
    history = (await client.get(f"/api/v1/admin/orders/{order_id}", headers=admin)).json()["history"]
    assert history[-1]["to_status"] == "CANCELLED" and history[-1]["actor"] == "operator:jane"
    # a second cancel is a conflict, shown as a page with the reason
    again = await client.post(f"/console/orders/{order_id}/cancel", data={"reason": "again", "csrf_token": token},
                              headers=ORIGIN)
    assert again.status_code == 409 and "text/html" in again.headers["content-type"]

    async with unit_of_work(sessions) as session:
        pending = await approvals_repo.insert_pending(session, {
            "tenant_id": uuid.uuid4(), "agent_id": uuid.uuid4(), "tool": "ghost", "action": "posts.delete",
            "risk_class": "CRITICAL_RED", "args_hash": "b" * 64, "args_preview": {"id": "42"}, "reasons": [],
            "expires_at": datetime.now(UTC) + timedelta(minutes=15)})
    r = await client.post(f"/console/approvals/{pending.id}/decision",
                          data={"decision": "approve", "note": "looked fine", "csrf_token": token}, headers=ORIGIN)
    assert r.status_code == 303
    decided = (await client.get(f"/api/v1/admin/approvals/{pending.id}", headers=admin)).json()
    assert decided["status"] == "APPROVED" and decided["decided_by"] == "operator:jane"

    alert_id = await raise_alert(sessions, "heartbeat.stale", "no heartbeat")
    r = await client.post(f"/console/alerts/{alert_id}/silence",
                          data={"hours": "4", "reason": "planned maintenance", "csrf_token": token}, headers=ORIGIN)
    assert r.status_code == 303
    silenced = await alert(sessions, alert_id)
    assert silenced.silenced_by == "operator:jane" and silenced.silenced_until > datetime.now(UTC) + timedelta(hours=3)
    assert silenced.silence_note == "planned maintenance"
    page = await client.get("/console/alerts?view=silenced")
    assert "planned maintenance" in page.text and "operator:jane" in page.text
    bad = await client.post(f"/console/alerts/{alert_id}/silence", data={"hours": "9999", "csrf_token": token},
                            headers=ORIGIN)
    assert bad.status_code == 422 and "30 days" in bad.text


async def test_a_decommission_from_the_console_keeps_the_configured_export_window_and_names_the_operator(
    settings, jane, sessions, admin
):
    app = create_app(settings.model_copy(update={"decommission_export_window_hours": 2.0}))
    async with LifespanManager(app), client_for(app) as client:
        tenant = await enroll(client, admin)
        token = await signed_in(client, jane)
        asked = datetime.now(UTC)
        r = await client.post(f"/console/tenants/{tenant.tenant_id}/decommission", headers=ORIGIN,
                              data={"confirm": tenant.domain, "reason": "moving out", "csrf_token": token})
        assert r.status_code == 303, r.text
    async with sessions() as s:
        [job] = (await s.execute(select(LifecycleJob).where(LifecycleJob.tenant_id == tenant.tenant_id))).scalars()
    assert job.requested_by == "operator:jane"
    export_until = datetime.fromisoformat(job.data["export_until"]) - asked
    assert timedelta(hours=2) <= export_until < timedelta(hours=2, minutes=5), "the setting, not the 14-day default"


async def test_sign_out_ends_the_session(client, jane, sessions):
    token = await signed_in(client, jane)
    cookie = client.cookies[OPERATOR.cookie]
    r = await client.post("/console/sign-out", data={"csrf_token": token}, headers=ORIGIN)
    assert r.status_code == 303 and r.headers["location"] == "/console/sign-in"
    client.cookies.set(OPERATOR.cookie, cookie, domain="hub", path="/console")
    assert (await client.get("/console/")).status_code == 303
    async with unit_of_work(sessions) as session:
        rows = (await session.execute(select(WebSession).where(WebSession.principal_kind == "operator"))).scalars()
        assert all(r.revoked_at is not None for r in rows)


async def test_every_page_renders(client, jane, sessions, admin):
    token = await signed_in(client, jane)
    r = await client.post("/api/v1/admin/orders", headers=admin, json=order_body(domain="pages.example.com"))
    order_id = r.json()["id"]
    for path in ["/console/", "/console/orders", "/console/orders?q=example.com", "/console/orders?q=a@b.example",
                 f"/console/orders/{order_id}", "/console/alerts?view=all", "/console/alerts?view=silenced",
                 "/console/approvals", "/console/approvals?status=APPROVED", "/console/rollouts",
                 "/console/tenants", "/console/tenants?domain=example.com", "/console/servers"]:
        page = await client.get(path)
        assert page.status_code == 200, (path, page.text[-3000:])
    assert (await client.get(f"/console/orders/{uuid.uuid4()}")).status_code == 404
    assert (await client.get("/console/orders?status=NOPE")).status_code == 422
    # a refused rollout start shows the form again, filled in, with what is wrong; nothing is started
    form = {"component": "openclaw", "image": "registry.letsbe.biz/letsbe/openclaw", "digest": "sha256:nope",
            "version": "2.0.0", "stages": "all 100 0", "csrf_token": token}
    r = await client.post("/console/rollouts", data=form, headers=ORIGIN)
    assert r.status_code == 422 and "digest" in r.text and 'value="registry.letsbe.biz/letsbe/openclaw"' in r.text
    r = await client.post("/console/rollouts", data={**form, "stages": "all x"}, headers=ORIGIN)
    assert r.status_code == 422 and "stages line 1" in r.text
    assert (await client.get("/api/v1/admin/rollouts", headers=admin)).json()["items"] == []


# --- helpers ---------------------------------------------------------------------------------------------------------


async def raise_alert(sessions, rule: str, summary: str) -> uuid.UUID:
    alert_id = uuid.uuid4()
    now = datetime.now(UTC)
    async with unit_of_work(sessions) as session:
        await alerts_repo.upsert_raised(session, AlertRaisedV1(
            alert_id=alert_id, tenant_id=uuid.uuid4(), rule=rule, severity=AlertSeverity.HARD, summary=summary,
            first_seen=now, last_seen=now))
    return alert_id


async def alert(sessions, alert_id: uuid.UUID):
    async with unit_of_work(sessions) as session:
        return await alerts_repo.get(session, alert_id)
