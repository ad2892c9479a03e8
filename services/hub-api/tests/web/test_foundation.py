"""The web foundation on a small app of its own: sessions, cookies, CSRF, security headers, HTML errors."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub_testing import hub_app
from letsbe_hub.config import HubSettings
from letsbe_hub.web import csrf, sessions, templates
from letsbe_hub.web.sessions import CUSTOMER, CustomerSession, WebSession
from letsbe_platform.db import unit_of_work
from letsbe_platform.web import SessionDep

PRINCIPAL = uuid.UUID("00000000-0000-4000-8000-000000000001")
ORIGIN = {"Origin": "https://hub"}

router = APIRouter()


@router.post("/api/v1/customer/_test/sign-in")
async def sign_in(request: Request, response: Response, session: SessionDep) -> dict[str, str]:
    settings = request.app.state.settings
    old = request.cookies.get(CUSTOMER.cookie)
    row, token = await sessions.start_session(session, CUSTOMER, PRINCIPAL, settings, replaces=old)
    sessions.set_session_cookie(response, request, CUSTOMER, token, settings)
    return {"session_id": str(row.id)}


@router.get("/api/v1/customer/_test/me")
async def me(web: CustomerSession) -> dict[str, str]:
    return {"principal_id": str(web.principal_id), "csrf_token": csrf.csrf_token(web)}


@router.post("/api/v1/customer/_test/write")
async def write(web: csrf.CustomerWrite) -> dict[str, str]:
    return {"ok": str(web.id)}


@router.post("/api/v1/customer/_test/everywhere")
async def everywhere(web: csrf.CustomerWrite, session: SessionDep) -> dict[str, int]:
    return {"revoked": await sessions.revoke_all_sessions(session, CUSTOMER, web.principal_id)}


@router.get("/portal/_test/page", response_class=HTMLResponse)
async def page(request: Request, web: CustomerSession) -> HTMLResponse:
    return templates.render(request, "error.html", {"title": "Hello", "detail": "<script>alert(1)</script>"})


@router.post("/portal/_test/form", response_class=HTMLResponse)
async def form(request: Request, web: csrf.CustomerWrite) -> HTMLResponse:
    return HTMLResponse("done")


@pytest.fixture
def settings(database_url: str, nats_url: str, bus_namespace: str) -> HubSettings:
    return HubSettings.model_validate(
        {"DATABASE_URL": database_url, "NATS_URL": nats_url, "LETSBE_BUS_NAMESPACE": bus_namespace, "log_json": False}
    )


@pytest_asyncio.fixture
async def client(settings: HubSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = hub_app(settings, routers=[router])
    async with LifespanManager(app) as manager:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=manager.app), base_url="https://hub") as c:
            yield c


async def signed_in(client: httpx.AsyncClient) -> str:
    r = await client.post("/api/v1/customer/_test/sign-in", headers=ORIGIN)
    assert r.status_code == 200
    return (await client.get("/api/v1/customer/_test/me")).json()["csrf_token"]


async def test_cookie_is_httponly_samesite_secure_and_path_scoped(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/customer/_test/sign-in", headers=ORIGIN)
    cookies = r.headers.get_list("set-cookie")
    assert sorted(c.split("Path=")[1].split(";")[0] for c in cookies) == ["/api/v1/customer", "/portal"]
    for c in cookies:
        assert c.startswith("letsbe_customer_session=")
        assert "HttpOnly" in c and "SameSite=lax" in c and "Secure" in c
        assert "Max-Age" not in c and "expires" not in c.lower()


async def test_secure_dropped_only_for_plain_http_loopback(settings: HubSettings) -> None:
    app = hub_app(settings.model_copy(update={"web_cookie_secure": False}), routers=[router])
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        cases = (("http://127.0.0.1", False), ("http://hub.example.com", True), ("https://127.0.0.1", True))
        for base, secure in cases:
            async with httpx.AsyncClient(transport=transport, base_url=base) as c:
                r = await c.post("/api/v1/customer/_test/sign-in", headers={"Origin": base})
                assert all(("Secure" in h) is secure for h in r.headers.get_list("set-cookie")), base


async def test_only_the_hash_is_stored_and_each_sign_in_issues_a_new_token(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await client.post("/api/v1/customer/_test/sign-in", headers=ORIGIN)
    first = client.cookies.get(CUSTOMER.cookie, path="/portal")
    await client.post("/api/v1/customer/_test/sign-in", headers=ORIGIN)
    second = client.cookies.get(CUSTOMER.cookie, path="/portal")
    assert first and second and first != second
    async with unit_of_work(sessions) as s:
        rows = (await s.execute(select(WebSession).order_by(WebSession.created_at))).scalars().all()
    assert [r.token_hash for r in rows] == [sessions_hash(first), sessions_hash(second)]
    assert rows[0].revoked_at is not None and rows[1].revoked_at is None  # the replaced session ended
    # A token planted before sign-in is not promoted: the old one no longer works.
    client.cookies.clear()
    r = await client.get("/api/v1/customer/_test/me", headers={"Cookie": f"{CUSTOMER.cookie}={first}"})
    assert r.status_code == 401


def sessions_hash(token: str) -> str:
    return sessions.token_hash(token)


async def test_no_cookie_or_unknown_token_is_401_problem(client: httpx.AsyncClient) -> None:
    for cookie in ({}, {"Cookie": f"{CUSTOMER.cookie}={'x' * 43}"}, {"Cookie": f"{CUSTOMER.cookie}={'y' * 500}"}):
        r = await client.get("/api/v1/customer/_test/me", headers=cookie)
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("field", ["last_seen_at", "expires_at"])
async def test_idle_and_absolute_expiry_end_the_session(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], settings: HubSettings, field: str
) -> None:
    await signed_in(client)
    past = {
        "last_seen_at": datetime.now(UTC) - timedelta(seconds=settings.web_session_idle_seconds + 1),
        "expires_at": datetime.now(UTC) - timedelta(seconds=1),
    }[field]
    async with unit_of_work(sessions) as s:
        await s.execute(update(WebSession).values({field: past}))
    assert (await client.get("/api/v1/customer/_test/me")).status_code == 401


async def test_sign_out_everywhere_ends_every_session_of_the_principal(client: httpx.AsyncClient) -> None:
    token = await signed_in(client)
    other = httpx.AsyncClient(transport=client._transport, base_url="https://hub")
    async with other:
        await signed_in(other)
        r = await client.post("/api/v1/customer/_test/everywhere", headers={**ORIGIN, "X-CSRF-Token": token})
        assert r.json() == {"revoked": 2}
        assert (await other.get("/api/v1/customer/_test/me")).status_code == 401
    assert (await client.get("/api/v1/customer/_test/me")).status_code == 401


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({"Origin": "https://hub"}, "security token"),  # no token
        ({"Origin": "https://hub", "X-CSRF-Token": "wrong"}, "security token"),
        ({"Origin": "https://evil.example", "X-CSRF-Token": "{token}"}, "did not come from"),
        ({"Referer": "https://evil.example/page", "X-CSRF-Token": "{token}"}, "did not come from"),
        ({"X-CSRF-Token": "{token}"}, "did not come from"),  # neither Origin nor Referer
    ],
)
async def test_state_changing_requests_need_origin_and_token(
    client: httpx.AsyncClient, headers: dict[str, str], detail: str
) -> None:
    token = await signed_in(client)
    sent = {k: v.replace("{token}", token) for k, v in headers.items()}
    r = await client.post("/api/v1/customer/_test/write", headers=sent)
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("/csrf") and detail in r.json()["detail"]


async def test_token_accepted_from_header_referer_or_form(client: httpx.AsyncClient) -> None:
    token = await signed_in(client)
    r = await client.post("/api/v1/customer/_test/write", headers={**ORIGIN, "X-CSRF-Token": token})
    assert r.status_code == 200
    r = await client.post("/portal/_test/form", data={"csrf_token": token}, headers={"Referer": "https://hub/portal/x"})
    assert r.status_code == 200 and r.text == "done"


async def test_html_routes_answer_pages_redirects_and_escape(client: httpx.AsyncClient) -> None:
    r = await client.get("/portal/_test/page")
    assert r.status_code == 303 and r.headers["location"] == "/portal/sign-in"
    await signed_in(client)
    r = await client.get("/portal/_test/page")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text and "<script>alert" not in r.text
    r = await client.post("/portal/_test/form", data={"csrf_token": "bad"}, headers=ORIGIN)
    assert r.status_code == 403 and r.headers["content-type"].startswith("text/html")
    assert "Cross-site request refused" in r.text
    for path in ("/portal/nothing-here", "/portal/_test/page/more"):  # unknown pages are pages too
        r = await client.get(path)
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html"), path
    r = await client.get("/api/v1/customer/nothing-here")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"


async def test_security_headers_on_web_routes_only(client: httpx.AsyncClient) -> None:
    await signed_in(client)
    for path in ("/portal/_test/page", "/api/v1/customer/_test/me", "/portal/nothing-here"):
        r = await client.get(path)
        assert "default-src 'self'" in r.headers["content-security-policy"], path
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert "unsafe-inline" not in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "same-origin"
        assert r.headers["cache-control"] == "no-store"
    r = await client.get("/static/web.css")
    assert r.status_code == 200 and "cache-control" not in r.headers and r.headers["x-frame-options"] == "DENY"
    assert "content-security-policy" not in (await client.get("/healthz")).headers
