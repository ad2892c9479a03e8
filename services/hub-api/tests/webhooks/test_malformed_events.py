"""Signed is not the same as well-formed: a correctly signed event that breaks our assumptions is a 400 Stripe stops
retrying (never a 500 it retries for days), and a signature dated in the future is refused like a stale one."""

import time

import pytest

from hub_testing.orders import count, order_body, post_event

WEBHOOK = "/api/v1/public/stripe/webhook"


def _completed(fake, **overrides):
    event = fake.event("checkout.session.completed", {"object": "checkout.session", "id": "cs_test_x"})
    event.update(overrides)
    return event


@pytest.mark.parametrize(
    ("case", "overrides"),
    [
        ("created beyond year 9999", {"created": 10**12}),
        ("created far beyond any date", {"created": 2**70}),
        ("negative created", {"created": -1}),
        ("id longer than the id column", {"id": "evt_" + "a" * 300}),
        ("id with a NUL", {"id": "evt_\x00x"}),
        ("type with a NUL", {"type": "checkout.session.completed\x00"}),
    ],
)
async def test_a_signed_but_malformed_event_is_400_and_stores_nothing(
    orders_hub, stripe_fake, sessions, case, overrides
):
    r = await post_event(orders_hub.client, stripe_fake.fake, _completed(stripe_fake.fake, **overrides))
    assert r.status_code == 400, (case, r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"].endswith("/invalid-webhook")
    assert await count(sessions, "SELECT count(*) FROM hub.stripe_events") == 0


async def test_a_refund_with_an_out_of_range_amount_or_a_nul_in_the_failure_is_400(
    orders_hub, operator, stripe_fake, sessions
):
    r = await orders_hub.client.post("/api/v1/admin/orders", json=order_body(), headers=operator)
    order = r.json()
    fake = stripe_fake.fake
    refund = fake.event(
        "charge.refunded",
        {
            "object": "charge",
            "id": "ch_1",
            "amount_refunded": 2**63,
            "currency": "eur",
            "metadata": {"order_id": order["id"]},
        },
    )
    failed = fake.event(
        "payment_intent.payment_failed",
        {
            "object": "payment_intent",
            "id": "pi_1",
            "metadata": {"order_id": order["id"]},
            "last_payment_error": {"message": "declined\x00"},
        },
    )
    for event in (refund, failed):
        r = await post_event(orders_hub.client, fake, event)
        assert r.status_code == 400, r.text
    assert await count(sessions, "SELECT count(*) FROM hub.stripe_events") == 0


async def test_a_signature_dated_in_the_future_beyond_the_tolerance_is_refused(
    orders_hub, operator, stripe_fake, sessions
):
    r = await orders_hub.client.post("/api/v1/admin/orders", json=order_body(), headers=operator)
    event = stripe_fake.fake.complete(r.json()["checkout_session_id"])
    r = await post_event(orders_hub.client, stripe_fake.fake, event, timestamp=int(time.time()) + 3600)
    assert r.status_code == 400 and r.json()["type"].endswith("/invalid-webhook")
    assert "future" in r.json()["detail"]
    assert await count(sessions, "SELECT count(*) FROM hub.stripe_events") == 0
    # clock skew within the tolerance is fine
    r = await post_event(orders_hub.client, stripe_fake.fake, event, timestamp=int(time.time()) + 60)
    assert r.status_code == 200 and r.json()["outcome"] == "confirmed"
