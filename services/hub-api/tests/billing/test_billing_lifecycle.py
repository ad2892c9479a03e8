"""Billing events drive the tenant: renewal, dunning → suspension → payment → resumed, cancellation → decommission
after the export window, plan changes, and redelivered events doing nothing twice. Stripe is the fake, driven through
its own billing cycle; the events reach the hub's webhook signed as Stripe signs them."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from hub_testing.billing import EXPORT_WINDOW, GRACE
from hub_testing.orders import count, post_event
from hub_testing.tenants import enroll
from letsbe_hub.billing.worker import BillingWorker
from letsbe_platform.testing import eventually

ROUTE = "/api/v1/public/orders"


async def _subscribed(hub, stripe, *, tier="build"):
    """A paid website order: (order id, subscription id, the paid period's end)."""
    r = await hub.client.post(
        ROUTE,
        json={
            "tier": tier,
            "region": "eu",
            "tools": ["nextcloud", "ghost"],
            "domain": f"shop-{uuid.uuid4().hex[:8]}.example.com",
            "email": "owner@acme.example",
        },
    )
    assert r.status_code == 201, r.text
    completed, paid = stripe.fake.complete_subscription(r.json()["checkout_session_id"])
    for event in (completed, paid):
        assert (await post_event(hub.client, stripe.fake, event)).status_code == 200
    return uuid.UUID(r.json()["order_id"]), completed["data"]["object"]["subscription"]


async def _row(sessions, order_id):
    async with sessions() as s:
        return (
            (await s.execute(text("SELECT * FROM hub.billing_subscriptions WHERE order_id = :o"), {"o": order_id}))
            .mappings()
            .one()
        )


def _worker(sessions, settings, at: datetime) -> BillingWorker:
    return BillingWorker(sessions, settings, clock=lambda: at)


async def _pull(hub, agent):
    r = await hub.client.get("/api/v1/tenant/commands", headers=agent.headers)
    assert r.status_code == 200, r.text
    return [(c["type"], c["params"]) for c in r.json()["commands"]]


async def test_a_paid_renewal_extends_the_paid_through_date(billing_hub, stripe_fake, sessions, smtp_server):
    order_id, sub_id = await _subscribed(billing_hub, stripe_fake)
    first = (await _row(sessions, order_id))["paid_through"]
    renewal = stripe_fake.fake.renew(sub_id)
    r = await post_event(billing_hub.client, stripe_fake.fake, renewal)
    assert r.json()["outcome"] == "renewed"
    row = await _row(sessions, order_id)
    assert row["state"] == "ACTIVE"
    assert row["paid_through"] - first == timedelta(days=30)
    assert row["paid_through"] == datetime.fromtimestamp(
        renewal["data"]["object"]["lines"]["data"][0]["period"]["end"], UTC
    )
    # The older invoice arriving late does not move the date back.
    await post_event(
        billing_hub.client,
        stripe_fake.fake,
        next(e for e in stripe_fake.fake.events if e["type"] == "invoice.paid" and e["id"] != renewal["id"])
        | {"id": "evt_late_replay"},
    )
    assert (await _row(sessions, order_id))["paid_through"] == row["paid_through"]
    assert smtp_server.messages == []


async def test_failed_payment_dunning_suspension_then_payment_resumes_the_tenant(
    billing_hub, stripe_fake, sessions, smtp_server, hub_settings, admin
):
    order_id, sub_id = await _subscribed(billing_hub, stripe_fake)
    agent = await enroll(billing_hub.client, admin, tenant_id=order_id)  # the tenant's Safety Wrapper

    failed = stripe_fake.fake.renew(sub_id, fail=True)
    r = await post_event(billing_hub.client, stripe_fake.fake, failed)
    assert r.json()["outcome"] == "dunning-started"
    row = await _row(sessions, order_id)
    assert row["state"] == "PAST_DUE"
    failed_at = datetime.fromtimestamp(failed["created"], UTC)
    assert row["grace_until"] == failed_at + timedelta(seconds=GRACE)

    worker = _worker(sessions, hub_settings, failed_at + timedelta(seconds=GRACE - 60))
    assert (await worker.tick())["suspended"] == 0  # grace still running: the tools keep working
    [mail] = await smtp_server.await_messages(1)
    assert mail["To"] == "owner@acme.example" and "payment failed" in mail["Subject"]
    assert failed["data"]["object"]["hosted_invoice_url"] in mail.get_content()
    assert await _pull(billing_hub, agent) == []

    # Stripe retries and fails again: a reminder, no state change.
    retry = stripe_fake.fake.event("invoice.payment_failed", {**failed["data"]["object"], "attempt_count": 2})
    assert (await post_event(billing_hub.client, stripe_fake.fake, retry)).json()["outcome"] == "dunning-reminded"

    worker = _worker(sessions, hub_settings, failed_at + timedelta(seconds=GRACE + 1))
    assert (await worker.tick())["suspended"] == 1
    assert (await worker.tick())["suspended"] == 0  # once
    assert (await _row(sessions, order_id))["state"] == "SUSPENDED"
    assert await _pull(billing_hub, agent) == [("suspend", {"reason": "payment overdue"})]
    mails = await smtp_server.await_messages(3)
    assert sorted(m["Subject"] for m in mails[1:]) == [
        "Reminder: your LetsBe payment is still open",
        "Your LetsBe tools are paused",
    ]

    paid = stripe_fake.fake.pay_invoice(failed["data"]["object"]["id"])
    assert (await post_event(billing_hub.client, stripe_fake.fake, paid)).json()["outcome"] == "resumed"
    row = await _row(sessions, order_id)
    assert row["state"] == "ACTIVE" and row["grace_until"] is None and row["suspended_at"] is None
    assert row["paid_through"] == datetime.fromtimestamp(failed["data"]["object"]["period_end"], UTC)
    seen = (await billing_hub.client.get(f"/api/v1/admin/orders/{order_id}/subscription", headers=admin)).json()
    assert seen["state"] == "ACTIVE" and seen["suspensions"] == 1 and seen["stripe_subscription_id"] == sub_id
    assert await _pull(billing_hub, agent) == [("resume", {"reason": f"invoice {paid['data']['object']['id']} paid"})]
    mails = await smtp_server.await_messages(4)
    assert mails[3]["Subject"] == "Your LetsBe server is running again"

    # A second failure later starts a new cycle with its own suspend command (not the first one's replay).
    again = stripe_fake.fake.renew(sub_id, fail=True)
    await post_event(billing_hub.client, stripe_fake.fake, again)
    later = datetime.fromtimestamp(again["created"], UTC) + timedelta(seconds=GRACE + 1)
    assert (await _worker(sessions, hub_settings, later).tick())["suspended"] == 1
    assert [t for t, _ in await _pull(billing_hub, agent)] == ["suspend"]
    assert (await _row(sessions, order_id))["suspensions"] == 2


async def test_cancellation_decommissions_the_tenant_after_the_export_window(
    billing_hub, stripe_fake, sessions, smtp_server, hub_settings, admin
):
    order_id, sub_id = await _subscribed(billing_hub, stripe_fake)
    await enroll(billing_hub.client, admin, tenant_id=order_id)
    deleted = stripe_fake.fake.cancel_subscription(sub_id)
    r = await post_event(billing_hub.client, stripe_fake.fake, deleted)
    assert r.json()["outcome"] == "decommission-scheduled"
    ended = datetime.fromtimestamp(deleted["created"], UTC)
    row = await _row(sessions, order_id)
    assert row["state"] == "CANCELLED" and row["decommission_at"] == ended + timedelta(seconds=EXPORT_WINDOW)
    [mail] = await smtp_server.await_messages(1)
    assert "ended" in mail["Subject"] and "export" in mail.get_content()

    tenant = f"/api/v1/admin/tenants/{order_id}"
    assert (await _worker(sessions, hub_settings, ended + timedelta(seconds=EXPORT_WINDOW - 1)).tick())[
        "decommissioned"
    ] == 0
    assert (await billing_hub.client.get(tenant, headers=admin)).json()["status"] == "ACTIVE"

    # Two replicas reach the end of the window at once: the tenant is decommissioned once.
    end = ended + timedelta(seconds=EXPORT_WINDOW + 1)
    results = await asyncio.gather(*(_worker(sessions, hub_settings, end).tick() for _ in range(2)))
    assert sorted(r["decommissioned"] for r in results) == [0, 1]
    shown = (await billing_hub.client.get(tenant, headers=admin)).json()
    assert shown["status"] == "DECOMMISSIONED"
    assert (await _row(sessions, order_id))["state"] == "DECOMMISSIONED"
    # The export window was the subscription's: the server's release is due now, not after a second window.
    job = await billing_hub.client.get(f"/api/v1/admin/lifecycle/jobs/{shown['decommission_job_id']}", headers=admin)
    assert job.json()["requested_by"] == "billing"
    assert datetime.fromisoformat(job.json()["due_at"]) <= datetime.now(UTC)
    assert (
        await count(sessions, "SELECT count(*) FROM hub.outbox WHERE subject = 'letsbe.tenant.decommissioned.v1'") == 1
    )


async def test_redelivered_billing_events_do_nothing_twice(
    billing_hub, stripe_fake, sessions, smtp_server, hub_settings, admin
):
    order_id, sub_id = await _subscribed(billing_hub, stripe_fake)
    agent = await enroll(billing_hub.client, admin, tenant_id=order_id)
    failed = stripe_fake.fake.renew(sub_id, fail=True)
    answers = await asyncio.gather(*(post_event(billing_hub.client, stripe_fake.fake, failed) for _ in range(3)))
    assert sorted(a.json()["outcome"] for a in answers) == ["dunning-started", "duplicate", "duplicate"]
    at = datetime.fromtimestamp(failed["created"], UTC) + timedelta(seconds=GRACE + 1)
    await _worker(sessions, hub_settings, at).tick()
    paid = stripe_fake.fake.pay_invoice(failed["data"]["object"]["id"])
    for _ in range(2):
        await post_event(billing_hub.client, stripe_fake.fake, paid)
    deleted = stripe_fake.fake.cancel_subscription(sub_id)
    for _ in range(2):
        await post_event(billing_hub.client, stripe_fake.fake, deleted)

    assert await count(sessions, "SELECT count(*) FROM hub.commands WHERE tenant_id = :t", t=order_id) == 2
    assert [t for t, _ in await _pull(billing_hub, agent)] == ["suspend", "resume"]
    assert await count(sessions, "SELECT count(*) FROM hub.billing_emails") == 4
    await _worker(sessions, hub_settings, at).tick()  # sends what the hub's own worker has not sent yet

    async def all_sent():
        return await count(sessions, "SELECT count(*) FROM hub.billing_emails WHERE state = 'sent'") == 4

    await eventually(all_sent, "payment failed, paused, running again, ended: each sent once")
    assert len(smtp_server.messages) == 4
    assert (await _row(sessions, order_id))["state"] == "CANCELLED"


async def test_a_plan_change_in_the_billing_portal_records_the_tier_and_alerts_an_operator(
    billing_hub, stripe_fake, sessions, operator
):
    order_id, sub_id = await _subscribed(billing_hub, stripe_fake)
    customer = (await _row(sessions, order_id))["stripe_customer_id"]
    r = await billing_hub.client.post(f"/api/v1/admin/orders/{order_id}/billing-portal", headers=operator)
    assert r.status_code == 200, r.text
    assert r.json()["url"].startswith("https://billing.stripe.com/p/session/")
    [portal] = stripe_fake.fake.portal_sessions.values()
    assert portal["customer"] == customer and portal["return_url"] == "https://letsbe.biz/account"
    unknown = await billing_hub.client.post(f"/api/v1/admin/orders/{uuid.uuid4()}/billing-portal", headers=operator)
    assert unknown.status_code == 404

    scale = next(p for p in stripe_fake.fake.prices.values() if p["lookup_key"] == "letsbe_scale_eu_monthly_eur")
    updated = stripe_fake.fake.change_price(sub_id, scale["id"])
    r = await post_event(billing_hub.client, stripe_fake.fake, updated)
    assert r.json()["outcome"] == "tier-change-flagged"
    row = await _row(sessions, order_id)
    assert row["tier"] == "scale" and row["price_id"] == scale["id"]
    order = (await billing_hub.client.get(f"/api/v1/admin/orders/{order_id}", headers=operator)).json()
    assert "from build to scale" in order["attention"]
    flagged = await billing_hub.client.get("/api/v1/admin/orders", params={"attention": "true"}, headers=operator)
    assert [o["id"] for o in flagged.json()["items"]] == [str(order_id)]
    # The same change delivered again (a new event id, as Stripe's retries of other updates) changes nothing.
    again = stripe_fake.fake.event("customer.subscription.updated", updated["data"]["object"])
    assert (await post_event(billing_hub.client, stripe_fake.fake, again)).json()["outcome"] == "unchanged"


async def test_a_failure_delivered_after_the_same_invoice_was_paid_changes_nothing(
    billing_hub, stripe_fake, sessions, smtp_server
):
    order_id, sub_id = await _subscribed(billing_hub, stripe_fake)
    failed = stripe_fake.fake.renew(sub_id, fail=True)
    paid = stripe_fake.fake.pay_invoice(failed["data"]["object"]["id"])
    assert (await post_event(billing_hub.client, stripe_fake.fake, paid)).json()["outcome"] == "renewed"
    late = await post_event(billing_hub.client, stripe_fake.fake, failed)  # Stripe does not promise the order
    assert late.json()["outcome"] == "ignored-stale"
    row = await _row(sessions, order_id)
    assert row["state"] == "ACTIVE" and row["grace_until"] is None
    assert await count(sessions, "SELECT count(*) FROM hub.billing_emails") == 0
