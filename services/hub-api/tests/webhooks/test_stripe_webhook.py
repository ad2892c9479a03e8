"""The Stripe webhook, driven with payloads signed exactly as Stripe signs them."""

import asyncio
import json
import time

import httpx
from asgi_lifespan import LifespanManager
from sqlalchemy import text

from hub_testing import hub_app
from hub_testing.orders import (
    count,
    insert_order,
    order_body,
    orders_settings,
    outbox_drained,
    post_event,
    published,
)
from letsbe_contracts.enums import OrderStatus
from letsbe_fakes.stripe import signature_header
from letsbe_hub.orders import wiring
from letsbe_platform.testing import eventually

ORDERS = "/api/v1/admin/orders"
WEBHOOK = "/api/v1/public/stripe/webhook"


async def _order(hub, operator, **overrides):
    r = await hub.client.post(ORDERS, json=order_body(**overrides), headers=operator)
    assert r.status_code == 201, r.text
    return r.json()


async def _status(hub, operator, order_id):
    return (await hub.client.get(f"{ORDERS}/{order_id}", headers=operator)).json()


async def test_the_same_completed_event_posted_three_times_at_once_confirms_once_and_emits_order_created_once(
    orders_hub, operator, stripe_fake, sessions, bus
):
    order = await _order(orders_hub, operator)
    event = stripe_fake.fake.complete(order["checkout_session_id"])
    responses = await asyncio.gather(*(post_event(orders_hub.client, stripe_fake.fake, event) for _ in range(3)))
    assert [r.status_code for r in responses] == [200, 200, 200]
    outcomes = sorted(r.json()["outcome"] for r in responses)
    assert outcomes == ["confirmed", "duplicate", "duplicate"]

    got = await _status(orders_hub, operator, order["id"])
    assert got["status"] == "AWAITING_SERVER"
    assert got["paid_at"] is not None
    assert [(h["from_status"], h["to_status"], h["actor"]) for h in got["history"]][1:] == [
        ("PENDING_PAYMENT", "PAYMENT_CONFIRMED", "stripe"),
        ("PAYMENT_CONFIRMED", "AWAITING_SERVER", "stripe"),
    ]
    assert await count(sessions, "SELECT count(*) FROM hub.stripe_events") == 1
    assert await count(sessions, "SELECT count(*) FROM hub.outbox WHERE subject = 'letsbe.order.created.v1'") == 1
    await eventually(lambda: outbox_drained(sessions))
    assert await published(bus, "letsbe.order.created.v1") == 1
    # ... and a replay much later (Stripe retries for days) is still acknowledged and still does nothing
    r = await post_event(orders_hub.client, stripe_fake.fake, event)
    assert r.status_code == 200 and r.json()["outcome"] == "duplicate"
    assert await published(bus, "letsbe.order.created.v1") == 1


async def test_order_created_carries_the_order_spec(orders_hub, operator, stripe_fake, sessions):
    order = await _order(orders_hub, operator, tools=["chatwoot", "nextcloud"], cloudflare_zone_id="a" * 32)
    await post_event(orders_hub.client, stripe_fake.fake, stripe_fake.fake.complete(order["checkout_session_id"]))
    async with sessions() as s:
        env = (
            await s.execute(text("SELECT envelope FROM hub.outbox WHERE subject = 'letsbe.order.created.v1'"))
        ).scalar()
    assert env["correlation_id"] == order["id"]
    assert env["payload"]["order"] == {
        "order_id": order["id"],
        "domain": order["domain"],
        "tier": "build",
        "region": "eu",
        "tools": ["chatwoot", "nextcloud"],
        "automation_mode": "AUTO",
        "customer_email": "owner@acme.test",
        "cloudflare_zone_id": "a" * 32,
    }


async def test_a_paid_manual_order_waits_for_an_operator(orders_hub, operator, stripe_fake, sessions):
    order = await _order(orders_hub, operator, automation_mode="MANUAL")
    r = await post_event(orders_hub.client, stripe_fake.fake, stripe_fake.fake.complete(order["checkout_session_id"]))
    assert r.json()["outcome"] == "confirmed"
    assert (await _status(orders_hub, operator, order["id"]))["status"] == "PAYMENT_CONFIRMED"
    assert await count(sessions, "SELECT count(*) FROM hub.outbox WHERE subject = 'letsbe.order.created.v1'") == 0
    r = await orders_hub.client.post(f"{ORDERS}/{order['id']}/release", headers=operator)
    assert r.json()["status"] == "AWAITING_SERVER"
    assert await count(sessions, "SELECT count(*) FROM hub.outbox WHERE subject = 'letsbe.order.created.v1'") == 1


async def test_a_bad_signature_is_400_and_writes_nothing(orders_hub, operator, stripe_fake, sessions):
    order = await _order(orders_hub, operator)
    event = stripe_fake.fake.complete(order["checkout_session_id"])
    body, headers = stripe_fake.fake.signed(event)
    before = await count(sessions, "SELECT count(*) FROM hub.outbox")
    tampered = body.replace(b'"paid"', b'"PAID"')
    cases = {
        "wrong secret": stripe_fake.fake.signed(event, secret="whsec_someone_else"),
        "tampered body": (tampered, headers),
        "too old (replayed capture)": stripe_fake.fake.signed(event, timestamp=int(time.time()) - 301),
        "no header": (body, {"Content-Type": "application/json"}),
        "garbage header": (body, {"Stripe-Signature": "nonsense"}),
    }
    for name, (payload, hdrs) in cases.items():
        r = await orders_hub.client.post(WEBHOOK, content=payload, headers=hdrs)
        assert r.status_code == 400, name
        assert r.headers["content-type"].startswith("application/problem+json"), name
        assert r.json()["type"].endswith("/invalid-webhook")
    assert await count(sessions, "SELECT count(*) FROM hub.stripe_events") == 0
    assert await count(sessions, "SELECT count(*) FROM hub.outbox") == before
    assert (await _status(orders_hub, operator, order["id"]))["status"] == "PENDING_PAYMENT"
    # within the 300 s tolerance it is accepted
    r = await post_event(orders_hub.client, stripe_fake.fake, event, timestamp=int(time.time()) - 290)
    assert r.status_code == 200 and r.json()["outcome"] == "confirmed"


async def test_a_signed_payload_that_is_not_an_event_is_400(orders_hub, stripe_fake, sessions):
    for payload in (b"not json", b"[1, 2]", json.dumps({"id": "evt_1", "object": "event"}).encode()):
        headers = {"Stripe-Signature": signature_header(payload, stripe_fake.fake.webhook_secret)}
        r = await orders_hub.client.post(WEBHOOK, content=payload, headers=headers)
        assert r.status_code == 400, payload
    completed_without_session_id = stripe_fake.fake.event("checkout.session.completed", {"object": "checkout.session"})
    r = await post_event(orders_hub.client, stripe_fake.fake, completed_without_session_id)
    assert r.status_code == 400
    assert await count(sessions, "SELECT count(*) FROM hub.stripe_events") == 0


async def test_out_of_order_and_stale_events_do_no_harm(orders_hub, operator, stripe_fake, sessions):
    fake = stripe_fake.fake
    order = await _order(orders_hub, operator)
    sid = order["checkout_session_id"]
    declined = fake.payment_failed(sid, "Your card was declined.")
    completed = fake.complete(sid)
    expired = fake.event("checkout.session.expired", {**completed["data"]["object"], "status": "expired"})

    # the decline arrives first: recorded, the order waits (the customer may try another card)
    r = await post_event(orders_hub.client, fake, declined)
    assert r.json()["outcome"] == "payment-failed-recorded"
    got = await _status(orders_hub, operator, order["id"])
    assert (got["status"], got["payment_failures"], got["last_payment_error"]) == (
        "PENDING_PAYMENT",
        1,
        "Your card was declined.",
    )
    assert (await post_event(orders_hub.client, fake, completed)).json()["outcome"] == "confirmed"
    # an expiry delivered after the completion changes nothing
    assert (await post_event(orders_hub.client, fake, expired)).json()["outcome"] == "ignored-stale"
    # a decline redelivered late (as a new event) changes nothing either
    late_decline = fake.payment_failed(sid)
    assert (await post_event(orders_hub.client, fake, late_decline)).json()["outcome"] == "ignored-stale"
    assert (await _status(orders_hub, operator, order["id"]))["status"] == "AWAITING_SERVER"


async def test_an_unpaid_session_expiring_cancels_the_order_but_an_older_session_does_not(
    orders_hub, operator, stripe_fake
):
    fake = stripe_fake.fake
    order = await _order(orders_hub, operator)
    old_sid = order["checkout_session_id"]
    new = (await orders_hub.client.post(f"{ORDERS}/{order['id']}/checkout", headers=operator)).json()
    assert (await post_event(orders_hub.client, fake, fake.expire_event(old_sid))).json()["outcome"] == "ignored-stale"
    assert (await _status(orders_hub, operator, order["id"]))["status"] == "PENDING_PAYMENT"
    r = await post_event(orders_hub.client, fake, fake.expire_event(new["checkout_session_id"]))
    assert r.json()["outcome"] == "cancelled"
    got = await _status(orders_hub, operator, order["id"])
    assert got["status"] == "CANCELLED" and got["history"][-1]["reason"] == "checkout session expired unpaid"


async def test_money_for_a_cancelled_order_and_refunds_after_fulfilment_are_recorded_and_flagged(
    orders_hub, operator, stripe_fake, sessions
):
    fake = stripe_fake.fake
    # paid after an operator cancelled it
    order = await _order(orders_hub, operator)
    await orders_hub.client.post(f"{ORDERS}/{order['id']}/cancel", headers=operator)
    r = await post_event(orders_hub.client, fake, fake.complete(order["checkout_session_id"]))
    assert r.json()["outcome"] == "flagged"
    got = await _status(orders_hub, operator, order["id"])
    assert got["status"] == "CANCELLED" and "refund" in got["attention"]

    # refunded once fulfilled: the amount is recorded (cumulative, replay-safe) and a person is asked to act
    oid = await insert_order(sessions, status=OrderStatus.FULFILLED, payment_intent_id="pi_test_fulfilled")

    def charge_refunded(amount_refunded: int, metadata: dict) -> dict:
        return fake.event(
            "charge.refunded",
            {
                "id": "ch_test_1",
                "object": "charge",
                "amount": 4900,
                "amount_refunded": amount_refunded,
                "currency": "eur",
                "payment_intent": "pi_test_fulfilled",
                "metadata": metadata,
                "refunded": amount_refunded == 4900,
            },
        )

    partial = charge_refunded(1000, {"order_id": str(oid)})
    full = charge_refunded(4900, {})  # no metadata (an older checkout): matched by its payment intent
    assert (await post_event(orders_hub.client, fake, full)).json()["outcome"] == "refund-recorded-flagged"
    assert (await post_event(orders_hub.client, fake, partial)).json()["outcome"] == "refund-recorded-flagged"
    got = await _status(orders_hub, operator, oid)
    assert got["status"] == "FULFILLED"
    assert got["amount_refunded_cents"] == 4900  # the late partial refund event did not lower it
    assert "decommission" in got["attention"]
    flagged = (await orders_hub.client.get(ORDERS, params={"attention": "true"}, headers=operator)).json()
    assert {o["id"] for o in flagged["items"]} == {order["id"], str(oid)}


async def test_events_for_unknown_orders_and_other_types_are_acknowledged(orders_hub, stripe_fake, sessions):
    fake = stripe_fake.fake
    other = fake.event("customer.created", {"id": "cus_1", "object": "customer"})
    assert (await post_event(orders_hub.client, fake, other)).json()["outcome"] == "ignored"
    stranger = fake.event(
        "checkout.session.completed",
        {"id": "cs_test_x", "object": "checkout.session", "payment_status": "paid", "metadata": {}},
    )
    assert (await post_event(orders_hub.client, fake, stranger)).json()["outcome"] == "unknown-order"
    assert await count(sessions, "SELECT count(*) FROM hub.stripe_events") == 2


async def test_webhook_latency_is_a_prometheus_histogram(orders_hub, operator, stripe_fake):
    order = await _order(orders_hub, operator)
    await post_event(orders_hub.client, stripe_fake.fake, stripe_fake.fake.complete(order["checkout_session_id"]))
    metrics = (await orders_hub.client.get("/metrics")).text
    assert (
        'hub_stripe_webhook_duration_seconds_bucket{event_type="checkout.session.completed",le="0.1",outcome="confirmed"}'
        in metrics
    )


async def test_without_a_webhook_secret_the_webhook_is_unavailable(
    database_url, nats_url, bus_namespace, stripe_fake, sessions
):
    settings = orders_settings(database_url, nats_url, bus_namespace, stripe_fake, None, stripe_webhook_secret=None)
    app = hub_app(settings, workers=wiring.start)
    async with (
        LifespanManager(app) as m,
        httpx.AsyncClient(transport=httpx.ASGITransport(m.app), base_url="http://h") as c,
    ):
        body, headers = stripe_fake.fake.signed(stripe_fake.fake.event("customer.created", {"id": "cus_1"}))
        r = await c.post(WEBHOOK, content=body, headers=headers)
    assert r.status_code == 503
    assert await count(sessions, "SELECT count(*) FROM hub.stripe_events") == 0


async def test_two_different_events_confirming_one_order_at_once_confirm_it_once(
    orders_hub, operator, stripe_fake, engine
):
    fake = stripe_fake.fake
    order = await _order(orders_hub, operator)
    completed = fake.complete(order["checkout_session_id"])
    succeeded = fake.event("checkout.session.async_payment_succeeded", completed["data"]["object"])
    # Hold the order's stream lock so both requests are in flight at the same time, then let them go.
    key = {"k": f"order-stream:{order['id']}"}
    async with engine.connect() as holder:
        await holder.execute(text("SELECT pg_advisory_lock(hashtextextended(:k, 0))"), key)
        both = asyncio.gather(
            post_event(orders_hub.client, fake, completed), post_event(orders_hub.client, fake, succeeded)
        )

        async def both_blocked() -> bool:  # on the stream lock, or on the order's row behind the one that waits there
            q = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            async with engine.connect() as c:
                return (await c.execute(text(q))).scalar_one() >= 2

        await eventually(both_blocked, "both requests waiting", timeout=30)
        await holder.execute(text("SELECT pg_advisory_unlock(hashtextextended(:k, 0))"), key)
        a, b = await both
    assert (a.status_code, b.status_code) == (200, 200)
    assert sorted([a.json()["outcome"], b.json()["outcome"]]) == ["already-confirmed", "confirmed"]
    got = await _status(orders_hub, operator, order["id"])
    assert [h["to_status"] for h in got["history"]] == ["PENDING_PAYMENT", "PAYMENT_CONFIRMED", "AWAITING_SERVER"]
