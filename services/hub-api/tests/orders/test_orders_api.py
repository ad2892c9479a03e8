"""The admin orders API: creation against the catalog and Stripe, listing, history, operator actions."""

import uuid

from hub_testing.orders import count, insert_order, order_body
from letsbe_contracts.enums import FailureStage, OrderStatus
from letsbe_hub.orders.state import transition
from letsbe_platform.db import unit_of_work

ORDERS = "/api/v1/admin/orders"


async def test_creating_an_order_opens_a_stripe_checkout_session_and_records_the_creation(
    orders_hub, operator, stripe_fake, sessions
):
    r = await orders_hub.client.post(ORDERS, json=order_body(domain="Shop.Acme.TEST.", tools=["nextcloud", "ghost"]))
    assert r.status_code == 401
    r = await orders_hub.client.post(
        ORDERS, json=order_body(domain="Shop.Acme.TEST.", tools=["nextcloud", "ghost"]), headers=operator
    )
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["status"] == "PENDING_PAYMENT"
    assert order["domain"] == "shop.acme.test"
    assert order["amount_cents"] == 4900 and order["currency"] == "eur"
    session = stripe_fake.fake.sessions[order["checkout_session_id"]]
    assert order["checkout_url"] == session["url"]
    assert session["client_reference_id"] == order["id"]
    assert session["metadata"]["order_id"] == order["id"]
    assert session["amount_total"] == 4900 and session["mode"] == "payment"
    assert session["_intent_metadata"] == {"order_id": order["id"]}
    [req] = stripe_fake.fake.requests
    assert req.idempotency_key == f"order-{order['id']}-checkout"
    assert [(h["from_status"], h["to_status"], h["actor"]) for h in order["history"]] == [
        (None, "PENDING_PAYMENT", "operator:test-operator")
    ]
    assert (
        await count(sessions, "SELECT count(*) FROM hub.outbox WHERE subject = 'letsbe.order.status.changed.v1'") == 1
    )


async def test_unknown_tools_are_a_422_that_names_them_and_nothing_is_created(
    orders_hub, operator, stripe_fake, sessions
):
    r = await orders_hub.client.post(
        ORDERS, json=order_body(tools=["nextcloud", "wordpress", "certbot"]), headers=operator
    )
    assert r.status_code == 422
    problem = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert problem["unknown_tools"] == ["wordpress", "certbot"]  # certbot is infrastructure, not selectable
    assert "wordpress" in problem["detail"] and "certbot" in problem["detail"]
    assert stripe_fake.fake.requests == []
    assert await count(sessions, "SELECT count(*) FROM hub.orders") == 0


async def test_bad_payloads_are_refused_with_problem_json(orders_hub, operator):
    for bad in (
        order_body(domain="not a domain"),
        order_body(tier="huge"),
        order_body(customer_email="nobody"),
        order_body(tools=[]),
        {**order_body(), "surprise": 1},
    ):
        r = await orders_hub.client.post(ORDERS, json=bad, headers=operator)
        assert r.status_code == 422, bad
        assert r.json()["type"].endswith("/validation")


async def test_a_second_live_order_for_a_domain_is_a_conflict_but_a_cancelled_one_frees_it(orders_hub, operator):
    body = order_body()
    first = (await orders_hub.client.post(ORDERS, json=body, headers=operator)).json()
    r = await orders_hub.client.post(ORDERS, json=body, headers=operator)
    assert r.status_code == 409 and r.json()["order_id"] == first["id"]
    assert (await orders_hub.client.post(f"{ORDERS}/{first['id']}/cancel", headers=operator)).status_code == 200
    assert (await orders_hub.client.post(ORDERS, json=body, headers=operator)).status_code == 201


async def test_when_stripe_fails_the_caller_gets_502_and_no_order_exists(orders_hub, operator, stripe_fake, sessions):
    stripe_fake.fake.fail_next(times=5, status=500)  # more than the SDK's retries
    r = await orders_hub.client.post(ORDERS, json=order_body(), headers=operator)
    assert r.status_code == 502
    assert r.json()["type"].endswith("/payment-provider")
    assert await count(sessions, "SELECT count(*) FROM hub.orders") == 0
    assert await count(sessions, "SELECT count(*) FROM hub.outbox") == 0


async def test_a_stripe_blip_is_retried_with_the_same_idempotency_key(orders_hub, operator, stripe_fake):
    stripe_fake.fake.fail_next(times=1, status=500)
    r = await orders_hub.client.post(ORDERS, json=order_body(), headers=operator)
    assert r.status_code == 201
    keys = [(q.status, q.idempotency_key) for q in stripe_fake.fake.requests]
    assert [k[0] for k in keys] == [500, 200] and keys[0][1] == keys[1][1]
    assert len(stripe_fake.fake.sessions) == 1


async def test_listing_filters_and_pages_with_a_stable_cursor(orders_hub, operator, sessions):
    ids = [await insert_order(sessions, status=OrderStatus.PENDING_PAYMENT) for _ in range(5)]
    failed = await insert_order(sessions, status=OrderStatus.FAILED, failed_stage="DNS", attention="look at me")
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await orders_hub.client.get(ORDERS, params=params, headers=operator)).json()
        seen += [o["id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(map(str, [*ids, failed])) and len(seen) == 6
    only_failed = (await orders_hub.client.get(ORDERS, params={"status": "FAILED"}, headers=operator)).json()
    assert [o["id"] for o in only_failed["items"]] == [str(failed)]
    two = (
        await orders_hub.client.get(
            ORDERS, params=[("status", "FAILED"), ("status", "PENDING_PAYMENT")], headers=operator
        )
    ).json()
    assert len(two["items"]) == 6
    flagged = (await orders_hub.client.get(ORDERS, params={"attention": "true"}, headers=operator)).json()
    assert [o["id"] for o in flagged["items"]] == [str(failed)]
    r = await orders_hub.client.get(ORDERS, params={"cursor": "garbage!"}, headers=operator)
    assert r.status_code == 400 and r.json()["type"].endswith("/invalid-cursor")


async def test_get_returns_the_full_history_and_404_for_unknown_orders(orders_hub, operator):
    order = (await orders_hub.client.post(ORDERS, json=order_body(), headers=operator)).json()
    await orders_hub.client.post(
        f"{ORDERS}/{order['id']}/cancel", json={"reason": "customer changed their mind"}, headers=operator
    )
    got = (await orders_hub.client.get(f"{ORDERS}/{order['id']}", headers=operator)).json()
    assert got["status"] == "CANCELLED"
    assert [(h["from_status"], h["to_status"], h["reason"]) for h in got["history"]] == [
        (None, "PENDING_PAYMENT", "order created"),
        ("PENDING_PAYMENT", "CANCELLED", "customer changed their mind"),
    ]
    r = await orders_hub.client.get(f"{ORDERS}/{uuid.uuid4()}", headers=operator)
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")


async def test_illegal_operator_actions_are_409_and_change_nothing(orders_hub, operator, sessions):
    fulfilled = await insert_order(sessions, status=OrderStatus.FULFILLED)
    auto_paid = await insert_order(sessions, status=OrderStatus.PAYMENT_CONFIRMED)
    manual_unpaid = await insert_order(sessions, status=OrderStatus.PENDING_PAYMENT, automation_mode="MANUAL")
    provisioning = await insert_order(sessions, status=OrderStatus.PROVISIONING)
    for path, oid in (
        ("cancel", fulfilled),
        ("retry", provisioning),
        ("retry", fulfilled),
        ("release", auto_paid),
        ("release", manual_unpaid),
        ("checkout", provisioning),
    ):
        r = await orders_hub.client.post(f"{ORDERS}/{oid}/{path}", headers=operator)
        assert r.status_code == 409, (path, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    assert await count(sessions, "SELECT count(*) FROM hub.order_transitions") == 0
    assert await count(sessions, "SELECT count(*) FROM hub.outbox") == 0


async def test_releasing_a_paid_manual_order_starts_automation_with_order_created(orders_hub, operator, sessions):
    oid = await insert_order(sessions, status=OrderStatus.PAYMENT_CONFIRMED, automation_mode="MANUAL")
    r = await orders_hub.client.post(f"{ORDERS}/{oid}/release", headers=operator)
    assert r.status_code == 200 and r.json()["status"] == "AWAITING_SERVER"
    assert r.json()["history"][-1]["actor"] == "operator:test-operator"
    assert await count(sessions, "SELECT count(*) FROM hub.outbox WHERE subject = 'letsbe.order.created.v1'") == 1


SERVER = {
    "server_id": str(uuid.uuid4()),
    "provider": "netcup",
    "provider_ref": "v2202411",
    "ipv4": "127.0.0.1",
    "host_key_fingerprint": "SHA256:" + "A" * 43,
}
RECORDS = [{"type": "A", "name": "acme.test", "content": "127.0.0.1"}]


async def test_retry_resumes_at_the_failed_stage_by_re_emitting_its_starting_event(orders_hub, operator, sessions):
    cases = [
        (FailureStage.ALLOCATION, {}, "AWAITING_SERVER", "letsbe.order.created.v1"),
        (FailureStage.DNS, {"server_target": SERVER}, "DNS_PENDING", "letsbe.server.allocated.v1"),
        (
            FailureStage.PROVISIONING,
            {"server_target": SERVER, "dns_records": RECORDS},
            "PROVISIONING",
            "letsbe.dns.ready.v1",
        ),
        # A DNS failure reported before we saw any server: nothing to re-send but the allocation.
        (FailureStage.DNS, {}, "AWAITING_SERVER", "letsbe.order.created.v1"),
    ]
    for stage, fields, expected_status, subject in cases:
        oid = await insert_order(
            sessions, status=OrderStatus.FAILED, failed_stage=stage, failure_retryable=True, **fields
        )
        r = await orders_hub.client.post(f"{ORDERS}/{oid}/retry", headers=operator)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == expected_status and r.json()["retry_count"] == 1
        async with sessions() as s:
            from sqlalchemy import text

            rows = (
                await s.execute(
                    text(
                        "SELECT subject, event_id FROM hub.outbox WHERE envelope->>'correlation_id' = :o "
                        "AND subject <> 'letsbe.order.status.changed.v1'"
                    ),
                    {"o": str(oid)},
                )
            ).all()
        assert [row.subject for row in rows] == [subject]
        # a second retry (after another failure) uses a new event id, so JetStream does not drop it as a duplicate
        async with unit_of_work(sessions) as s:
            await transition(s, oid, OrderStatus.FAILED, actor="t", reason="again", stage=stage)
        await orders_hub.client.post(f"{ORDERS}/{oid}/retry", headers=operator)
        async with sessions() as s:
            ids = (
                (
                    await s.execute(
                        text("SELECT event_id FROM hub.outbox WHERE subject = :s AND envelope->>'correlation_id' = :o"),
                        {"s": subject, "o": str(oid)},
                    )
                )
                .scalars()
                .all()
            )
        assert len(set(ids)) == 2


async def test_a_failure_reported_as_not_retryable_needs_force(orders_hub, operator, sessions):
    oid = await insert_order(sessions, status=OrderStatus.FAILED, failed_stage="ALLOCATION", failure_retryable=False)
    r = await orders_hub.client.post(f"{ORDERS}/{oid}/retry", headers=operator)
    assert r.status_code == 409
    r = await orders_hub.client.post(
        f"{ORDERS}/{oid}/retry", json={"force": True, "reason": "quota raised"}, headers=operator
    )
    assert r.status_code == 200 and r.json()["history"][-1]["reason"] == "retry #1 from ALLOCATION: quota raised"


async def test_a_new_checkout_session_replaces_the_old_one_for_an_unpaid_order(orders_hub, operator, stripe_fake):
    order = (await orders_hub.client.post(ORDERS, json=order_body(), headers=operator)).json()
    r = await orders_hub.client.post(f"{ORDERS}/{order['id']}/checkout", headers=operator)
    assert r.status_code == 201
    assert r.json()["checkout_session_id"] != order["checkout_session_id"]
    assert len(stripe_fake.fake.sessions) == 2
