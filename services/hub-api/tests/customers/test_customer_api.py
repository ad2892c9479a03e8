"""The customer API: sign-in by emailed link, sessions and CSRF, and a customer sees only their own things."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi.routing import iter_route_contexts
from sqlalchemy import select, update

from hub_testing import hub_app
from hub_testing.customers import emailed_link, path_of, sign_in, sign_in_links
from hub_testing.orders import insert_order, sse_events, token
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.customers.models import SignInLink
from letsbe_hub.orders import wiring
from letsbe_hub.web.sessions import CUSTOMER, WebSession
from letsbe_platform.db import unit_of_work

from .conftest import client_of
from .seed import fulfilled_order

ALICE, BOB = "alice@shop.test", "bob@other.test"
ORIGIN = {"Origin": "https://hub"}
API = "/api/v1/customer"


def has_session(client: httpx.AsyncClient) -> bool:
    return any(c.name == CUSTOMER.cookie for c in client.cookies.jar)


def session_cookie(client: httpx.AsyncClient) -> str | None:
    return next((c.value for c in client.cookies.jar if c.name == CUSTOMER.cookie and c.path == "/portal"), None)


async def test_sign_in_answer_is_the_same_for_unknown_and_known_emails(
    alice: httpx.AsyncClient, sessions, smtp_server
) -> None:
    await insert_order(sessions, customer_email="Alice@Shop.test")
    known = await alice.post(f"{API}/sign-in", json={"email": ALICE})
    unknown = await alice.post(f"{API}/sign-in", json={"email": "nobody@nowhere.test"})
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()
    await emailed_link(smtp_server, ALICE)  # order emails match case-insensitively
    assert all(m["To"] != "nobody@nowhere.test" for m in smtp_server.messages)
    bad = await alice.post(f"{API}/sign-in", json={"email": "not an email"})
    assert bad.status_code == 422


async def test_link_signs_in_once_and_the_confirm_page_does_not_use_it(
    alice: httpx.AsyncClient, bob: httpx.AsyncClient, sessions, smtp_server
) -> None:
    await insert_order(sessions, customer_email=ALICE)
    await alice.post(f"{API}/sign-in", json={"email": ALICE})
    path = path_of(await emailed_link(smtp_server, ALICE))
    # A mail scanner opening the link sees a page with a button, and the link still works afterwards.
    page = await bob.get(path)
    assert page.status_code == 200 and 'id="confirm-sign-in"' in page.text
    used = await alice.post(path, headers=ORIGIN)
    assert used.status_code == 303 and has_session(alice)
    assert (await alice.get(f"{API}/me")).json()["email"] == ALICE
    again = await bob.post(path, headers=ORIGIN)
    assert again.status_code == 404 and not has_session(bob)
    assert (await bob.get(path)).status_code == 404
    # Only the token's hash is stored.
    async with sessions() as s:
        hashes = (await s.execute(select(SignInLink.token_hash))).scalars().all()
    assert path.rsplit("/", 1)[1] not in hashes and len(hashes) == 1


async def test_expired_link_and_cross_site_use_are_refused(alice: httpx.AsyncClient, sessions, smtp_server) -> None:
    await insert_order(sessions, customer_email=ALICE)
    await alice.post(f"{API}/sign-in", json={"email": ALICE})
    path = path_of(await emailed_link(smtp_server, ALICE))
    cross = await alice.post(path, headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403 and "text/html" in cross.headers["content-type"]
    async with unit_of_work(sessions) as s:
        await s.execute(update(SignInLink).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert (await alice.post(path, headers=ORIGIN)).status_code == 404
    assert not has_session(alice)


async def test_links_per_email_are_limited_silently_and_per_address_with_429(
    alice: httpx.AsyncClient, sessions, smtp_server, hub_settings
) -> None:
    await insert_order(sessions, customer_email=ALICE)
    limit = hub_settings.sign_in_links_per_email_per_hour
    for _ in range(limit + 2):
        r = await alice.post(f"{API}/sign-in", json={"email": ALICE})
        assert r.status_code == 202
    await emailed_link(smtp_server, ALICE, after=limit - 1)
    assert len(sign_in_links(smtp_server, ALICE)) == limit
    per_ip = hub_settings.sign_in_requests_per_ip_per_minute
    answers = [(await alice.post(f"{API}/sign-in", json={"email": f"x{i}@y.test"})) for i in range(per_ip)]
    used = limit + 2  # this address's requests so far, this minute
    assert [a.status_code for a in answers] == [202] * (per_ip - used) + [429] * used
    assert answers[-1].headers["content-type"] == "application/problem+json"
    # Behind the hub's nginx every request comes from nginx: the limit is per browser (the address nginx saw), not
    # global, and counted in Postgres for every replica.
    other = {"X-Forwarded-For": "203.0.113.7"}
    assert (await alice.post(f"{API}/sign-in", json={"email": "x@y.test"}, headers=other)).status_code == 202
    replica = hub_app(hub_settings, workers=wiring.start)
    async with LifespanManager(replica), client_of(replica) as elsewhere:
        assert (await elsewhere.post(f"{API}/sign-in", json={"email": "x@y.test"})).status_code == 429


async def test_sign_in_replaces_a_planted_session_cookie(
    alice: httpx.AsyncClient, bob: httpx.AsyncClient, sessions, smtp_server
) -> None:
    """Session fixation: a token planted in the victim's browser is not the one they end up signed in with."""
    await insert_order(sessions, customer_email=ALICE)
    await insert_order(sessions, customer_email=BOB)
    await sign_in(bob, smtp_server, BOB)
    planted = session_cookie(bob)
    assert planted
    for path in CUSTOMER.paths:
        alice.cookies.set(CUSTOMER.cookie, planted, domain="hub.local", path=path)
    await sign_in(alice, smtp_server, ALICE)
    assert session_cookie(alice) not in (None, planted)
    assert (await alice.get(f"{API}/me")).json()["email"] == ALICE
    # The planted session (it was sent along with the sign-in) is over: the attacker holding it is signed out.
    assert (await bob.get(f"{API}/me")).status_code == 401


async def test_sign_out_and_sign_out_everywhere(customer_app, alice: httpx.AsyncClient, sessions, smtp_server) -> None:
    from .conftest import client_of

    await insert_order(sessions, customer_email=ALICE)
    token = await sign_in(alice, smtp_server, ALICE)
    assert (await alice.post(f"{API}/sign-out", headers=ORIGIN)).status_code == 403  # no CSRF token
    r = await alice.post(f"{API}/sign-out", headers={**ORIGIN, "X-CSRF-Token": token})
    assert r.status_code == 204 and (await alice.get(f"{API}/me")).status_code == 401
    async with client_of(customer_app) as laptop, client_of(customer_app) as phone:
        token = await sign_in(laptop, smtp_server, ALICE)
        await sign_in(phone, smtp_server, ALICE)
        r = await laptop.post(f"{API}/sign-out-everywhere", headers={**ORIGIN, "X-CSRF-Token": token})
        assert r.status_code == 204
        assert (await phone.get(f"{API}/me")).status_code == 401
        assert (await laptop.get(f"{API}/me")).status_code == 401
    async with sessions() as s:
        live = (await s.execute(select(WebSession).where(WebSession.revoked_at.is_(None)))).scalars().all()
    assert live == []


async def test_idle_session_expires(alice: httpx.AsyncClient, sessions, smtp_server, hub_settings) -> None:
    await insert_order(sessions, customer_email=ALICE)
    await sign_in(alice, smtp_server, ALICE)
    async with unit_of_work(sessions) as s:
        idle = timedelta(seconds=hub_settings.web_session_idle_seconds + 1)
        await s.execute(update(WebSession).values(last_seen_at=datetime.now(UTC) - idle))
    r = await alice.get(f"{API}/orders")
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    page = await alice.get("/portal/orders")
    assert page.status_code == 303 and page.headers["location"] == "/portal/sign-in"


async def test_customer_sees_orders_tenant_usage_events_and_invoices(
    alice: httpx.AsyncClient, sessions, smtp_server, hub_settings, stripe_fake
) -> None:
    order_id = await fulfilled_order(
        sessions, hub_settings, ALICE, tokens=(300_000, 200_000), tools=["nextcloud", "ghost", "portainer"]
    )
    pending = await insert_order(sessions, customer_email=ALICE, checkout_url="https://checkout.stripe.test/c/1")
    await sign_in(alice, smtp_server, ALICE)

    orders = (await alice.get(f"{API}/orders")).json()
    assert {o["order_id"] for o in orders} == {str(order_id), str(pending)}
    mine = (await alice.get(f"{API}/orders/{pending}")).json()
    assert mine["status"] == "PENDING_PAYMENT" and mine["checkout_url"] == "https://checkout.stripe.test/c/1"
    assert "customer_email" not in mine and "attention" not in mine

    tenant = (await alice.get(f"{API}/tenants/{order_id}")).json()
    assert tenant["health"] == "ok" and tenant["last_backup"]["ok"] is True
    # Portainer is the operator's, never listed for the customer.
    assert sorted(t["tool"] for t in tenant["tools"]) == ["ghost", "nextcloud"]
    domain = next(o["domain"] for o in orders if o["order_id"] == str(order_id))
    assert all(re.fullmatch(rf"https://[a-z0-9-]+\.{re.escape(domain)}", t["url"]) for t in tenant["tools"]), tenant
    assert [t["tenant_id"] for t in (await alice.get(f"{API}/tenants")).json()] == [str(order_id)]

    usage = (await alice.get(f"{API}/tenants/{order_id}/usage")).json()
    allowance = hub_settings.tier_monthly_tokens["build"]
    assert usage["tokens_used"] == 500_000 and usage["allowance"] == allowance
    assert usage["percent_used"] == round(100 * 500_000 / allowance, 1)

    # The same stream as the admin's: history, then "end" at a final state; resumable from an id.
    r = await alice.get(f"{API}/orders/{order_id}/events")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert [e["event"] for e in events] == ["status", "status", "log", "end"]
    resume = {"Last-Event-ID": events[1]["id"]}
    resumed = sse_events((await alice.get(f"{API}/orders/{order_id}/events", headers=resume)).text)
    assert [e["event"] for e in resumed] == ["log", "end"]

    assert (await alice.get(f"{API}/invoices")).json() == []
    stripe_fake.fake.add_invoice(ALICE, 4900, description="Build plan")
    stripe_fake.fake.add_invoice(BOB, 8900)
    stripe_fake.fake.add_invoice(ALICE, 4900, status="open")
    invoices = (await alice.get(f"{API}/invoices")).json()
    assert [(i["status"], i["amount_due_cents"]) for i in invoices] == [("open", 4900), ("paid", 4900)]


async def test_credentials_are_revealed_once_with_a_csrf_token(
    alice: httpx.AsyncClient, sessions, smtp_server, hub_settings
) -> None:
    order_id = await fulfilled_order(sessions, hub_settings, ALICE)
    token = await sign_in(alice, smtp_server, ALICE)
    url = f"{API}/orders/{order_id}/credentials/reveal"
    assert (await alice.get(f"{API}/orders/{order_id}")).json()["credentials_waiting"] is True
    assert (await alice.post(url, headers=ORIGIN)).status_code == 403
    assert (await alice.post(url, headers={"Origin": "https://evil.example", "X-CSRF-Token": token})).status_code == 403
    shown = await alice.post(url, headers={**ORIGIN, "X-CSRF-Token": token})
    assert shown.status_code == 200 and shown.json()["credentials"][0]["password"] == "correct-horse-battery"
    assert shown.headers["cache-control"] == "no-store"
    assert (await alice.post(url, headers={**ORIGIN, "X-CSRF-Token": token})).status_code == 404
    assert (await alice.get(f"{API}/orders/{order_id}")).json()["credentials_waiting"] is False


# --- another customer's session: every route with an id answers 404, like an id that does not exist ------------

OTHERS = [
    ("GET", f"{API}/orders/{{order}}"),
    ("GET", f"{API}/orders/{{order}}/events"),
    ("POST", f"{API}/orders/{{order}}/credentials/reveal"),
    ("GET", f"{API}/tenants/{{tenant}}"),
    ("GET", f"{API}/tenants/{{tenant}}/usage"),
    ("GET", "/portal/orders/{order}"),
    ("GET", "/portal/tenants/{tenant}"),
    ("POST", "/portal/orders/{order}/credentials"),
]


# Covered by test_push_devices_are_registered_once_listed_and_forgotten_only_by_their_owner.
PUSH_DEVICE_ROUTES = [("DELETE", f"{API}/push-devices/{{device_id}}")]


async def test_the_table_covers_every_customer_route_with_an_id(customer_app) -> None:
    with_ids = {
        (m, re.sub(r"\{(order|tenant)_id\}", r"{\1}", ctx.path))
        for ctx in iter_route_contexts(customer_app.routes)
        for m in ctx.methods or ()
        if m != "HEAD"
        and "{" in ctx.path
        and ctx.path.startswith((API, "/portal"))
        and not ctx.path.startswith("/portal/sign-in")
    }
    assert with_ids == set(OTHERS) | set(PUSH_DEVICE_ROUTES)


@pytest.mark.parametrize(("method", "path"), OTHERS)
async def test_another_customers_ids_are_not_found(
    method: str, path: str, alice: httpx.AsyncClient, bob: httpx.AsyncClient, sessions, smtp_server, hub_settings
) -> None:
    order_id = await fulfilled_order(sessions, hub_settings, ALICE)
    await insert_order(sessions, customer_email=BOB)
    bob_token = await sign_in(bob, smtp_server, BOB)
    url = path.format(order=order_id, tenant=order_id)
    body = {"csrf_token": bob_token} if path.startswith("/portal") and method == "POST" else None
    r = await bob.request(method, url, headers={**ORIGIN, "X-CSRF-Token": bob_token}, data=body)
    assert r.status_code == 404, r.text
    missing = await bob.request(
        method,
        path.format(order=uuid.uuid4(), tenant=uuid.uuid4()),
        headers={**ORIGIN, "X-CSRF-Token": bob_token},
        data=body,
    )
    assert missing.status_code == 404 and missing.text.replace(str(order_id), "") == missing.text
    # Alice's own session reaches the same thing (the 404 above was about ownership, not the route).
    await sign_in(alice, smtp_server, ALICE)
    if method == "GET":
        assert (await alice.get(url)).status_code == 200
    # Bob's lists do not mention Alice's order.
    for listing in (f"{API}/orders", f"{API}/tenants", "/portal/orders"):
        assert str(order_id) not in (await bob.get(listing)).text


async def test_every_customer_route_needs_a_session(customer_app, alice: httpx.AsyncClient) -> None:
    oid = uuid.uuid4()
    for ctx in iter_route_contexts(customer_app.routes):
        if not ctx.path.startswith(API) or ctx.path == f"{API}/sign-in":
            continue
        for method in (ctx.methods or set()) - {"HEAD"}:
            r = await alice.request(
                method, ctx.path.replace("{order_id}", str(oid)).replace("{tenant_id}", str(oid)), headers=ORIGIN
            )
            assert r.status_code == 401, (method, ctx.path, r.status_code)


async def test_push_devices_are_registered_once_listed_and_forgotten_only_by_their_owner(
    customer_app, alice: httpx.AsyncClient, bob: httpx.AsyncClient, sessions, smtp_server, hub_settings
) -> None:
    tenant_id = await fulfilled_order(sessions, hub_settings, ALICE)
    await insert_order(sessions, customer_email=BOB)
    a, b = await sign_in(alice, smtp_server, ALICE), await sign_in(bob, smtp_server, BOB)
    url, device = f"{API}/push-devices", {"platform": "apns", "token": "f0" * 32, "label": "Alice's iPhone"}
    assert (await alice.post(url, json=device, headers=ORIGIN)).status_code == 403  # no CSRF token
    first = await alice.post(url, json=device, headers={**ORIGIN, "X-CSRF-Token": a})
    again = await alice.post(url, json=device, headers={**ORIGIN, "X-CSRF-Token": a})
    assert first.status_code == again.status_code == 201, first.text
    assert again.json()["device_id"] == first.json()["device_id"]  # the same device, once
    assert first.json()["token_tail"] == "f0f0f0" and device["token"] not in first.text
    for bad in (
        {**device, "platform": "sms"},
        {**device, "token": "has a space in it"},
        {**device, "token": "short"},
        {**device, "token": "x" * 4097},
        {**device, "colour": "blue"},
        {"platform": "fcm"},
    ):
        r = await alice.post(url, json=bad, headers={**ORIGIN, "X-CSRF-Token": a})
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", bad
    assert [d["device_id"] for d in (await alice.get(url)).json()] == [first.json()["device_id"]]
    assert (await bob.get(url)).json() == []

    mine = f"{url}/{first.json()['device_id']}"
    assert (await bob.delete(mine, headers={**ORIGIN, "X-CSRF-Token": b})).status_code == 404
    assert (await bob.delete(f"{url}/{uuid.uuid4()}", headers={**ORIGIN, "X-CSRF-Token": b})).status_code == 404

    # The push gateway's address book for the tenant: its customer's devices, tokens in full (fleet:read).
    async with client_of(customer_app) as ops:
        admin = {"Authorization": f"Bearer {await token(sessions, [Scope.FLEET_READ])}"}
        book = f"/api/v1/admin/tenants/{tenant_id}/push-devices"
        assert (await ops.get(book)).status_code == 401
        listed = (await ops.get(book, headers=admin)).json()
        assert [(d["platform"], d["token"]) for d in listed["items"]] == [("apns", device["token"])]
        assert (await alice.delete(mine, headers={**ORIGIN, "X-CSRF-Token": a})).status_code == 204
        assert (await ops.get(book, headers=admin)).json()["items"] == []
    assert (await alice.get(url)).json() == []
