"""The events that move an order from AWAITING_SERVER to FULFILLED, over real NATS, idempotently."""

import uuid

from sqlalchemy import text

from hub_testing.orders import consumer_idle, insert_order, order_body, order_spec, post_event, published, server_target
from letsbe_contracts.enums import FailureStage, OrderStatus, StepStatus
from letsbe_contracts.events import (
    DeadLetteredV1,
    DnsReadyV1,
    DnsRecordRef,
    OrderFailedV1,
    OrderSpec,
    ProvisionedV1,
    ProvisioningLogV1,
    ProvisioningStepV1,
    ServerAllocatedV1,
)
from letsbe_platform.testing import eventually

ORDERS = "/api/v1/admin/orders"


async def _paid_order(hub, operator, stripe) -> dict:
    order = (await hub.client.post(ORDERS, json=order_body(), headers=operator)).json()
    await post_event(hub.client, stripe.fake, stripe.fake.complete(order["checkout_session_id"]))
    return order


async def _wait_status(hub, operator, order_id, status: str) -> dict:
    async def check():
        got = (await hub.client.get(f"{ORDERS}/{order_id}", headers=operator)).json()
        return got if got["status"] == status else None

    return await eventually(check)


async def test_the_four_events_walk_a_paid_order_to_fulfilled_and_a_welcome_email_goes_out_once(
    orders_hub, operator, stripe_fake, smtp_server, bus, sessions
):
    order = await _paid_order(orders_hub, operator, stripe_fake)
    spec, server = order_spec(order), server_target()
    cid = order["id"]
    await bus.publish(ServerAllocatedV1(order=spec, server=server), correlation_id=cid)
    got = await _wait_status(orders_hub, operator, cid, "DNS_PENDING")
    assert got["server_target"]["ipv4"] == "127.0.0.1"
    records = (DnsRecordRef(type="A", name=spec.domain, content="127.0.0.1"),)
    await bus.publish(DnsReadyV1(order=spec, server=server, records=records), correlation_id=cid)
    await _wait_status(orders_hub, operator, cid, "PROVISIONING")
    tenant_id = uuid.UUID(cid)
    provisioned = ProvisionedV1(
        order=spec, server=server, tenant_id=tenant_id, job_id=uuid.uuid4(), duration_seconds=42
    )
    envelope = await bus.publish(provisioned, correlation_id=cid)
    got = await _wait_status(orders_hub, operator, cid, "FULFILLED")
    assert got["tenant_id"] == cid
    assert [h["to_status"] for h in got["history"]] == [
        "PENDING_PAYMENT",
        "PAYMENT_CONFIRMED",
        "AWAITING_SERVER",
        "SERVER_READY",
        "DNS_PENDING",
        "DNS_READY",
        "PROVISIONING",
        "FULFILLED",
    ]
    [mail] = await smtp_server.await_messages(1)
    assert mail["To"] == "owner@acme.test"
    assert mail["Message-ID"] == f"<welcome.{cid}@letsbe.test>"
    body = mail.get_content()
    assert f"https://files.{spec.domain}" in body and f"https://blog.{spec.domain}" in body

    # JetStream redelivers the same event (same envelope id, e.g. the ack was lost): nothing happens again
    await bus.publish_raw(
        ProvisionedV1.SUBJECT, envelope.model_dump_json().encode(), msg_id=f"redelivery-{uuid.uuid4()}"
    )
    await eventually(lambda: consumer_idle(bus, "hub-on-provisioned"))

    async def nothing_to_send() -> bool:  # had the redelivery queued a mail again, it is sent (or fails) first
        async with sessions() as s:
            q = "SELECT count(*) FROM hub.welcome_emails WHERE state IN ('pending', 'sending')"
            return (await s.execute(text(q))).scalar_one() == 0

    await eventually(nothing_to_send, "no welcome email waiting to be sent")
    assert len(smtp_server.messages) == 1
    got = (await orders_hub.client.get(f"{ORDERS}/{cid}", headers=operator)).json()
    assert len(got["history"]) == 8
    assert got["welcome_email"]["state"] == "sent" and got["welcome_email"]["attempts"] == 1


async def test_an_event_that_overtakes_its_predecessor_catches_the_order_up_and_the_late_one_is_harmless(
    orders_hub, operator, stripe_fake, bus
):
    order = await _paid_order(orders_hub, operator, stripe_fake)
    spec, server = order_spec(order), server_target()
    records = (DnsRecordRef(type="A", name=spec.domain, content="127.0.0.1"),)
    await bus.publish(DnsReadyV1(order=spec, server=server, records=records), correlation_id=order["id"])
    got = await _wait_status(orders_hub, operator, order["id"], "PROVISIONING")
    assert [h["to_status"] for h in got["history"]][3:] == ["SERVER_READY", "DNS_PENDING", "DNS_READY", "PROVISIONING"]
    await bus.publish(ServerAllocatedV1(order=spec, server=server), correlation_id=order["id"])
    await eventually(lambda: consumer_idle(bus, "hub-on-server-allocated"))
    got = (await orders_hub.client.get(f"{ORDERS}/{order['id']}", headers=operator)).json()
    assert got["status"] == "PROVISIONING" and len(got["history"]) == 7


async def test_failures_fail_the_order_at_their_stage_unless_they_are_stale(orders_hub, operator, bus, sessions):
    dns_pending = await insert_order(sessions, status=OrderStatus.DNS_PENDING)
    provisioning = await insert_order(sessions, status=OrderStatus.PROVISIONING)
    cancelled = await insert_order(sessions, status=OrderStatus.CANCELLED)
    await bus.publish(
        OrderFailedV1(order_id=dns_pending, stage=FailureStage.DNS, reason="Cloudflare said 403", retryable=False),
        correlation_id=dns_pending,
    )
    # a failure of an earlier stage, delivered after the order moved on: stale
    await bus.publish(
        OrderFailedV1(order_id=provisioning, stage=FailureStage.ALLOCATION, reason="old news", retryable=True),
        correlation_id=provisioning,
    )
    await bus.publish(
        OrderFailedV1(order_id=cancelled, stage=FailureStage.DNS, reason="too late", retryable=True),
        correlation_id=cancelled,
    )
    got = await _wait_status(orders_hub, operator, dns_pending, "FAILED")
    assert (got["failed_stage"], got["failure_reason"], got["failure_retryable"]) == (
        "DNS",
        "Cloudflare said 403",
        False,
    )
    await eventually(lambda: consumer_idle(bus, "hub-on-order-failed"))
    for oid, status in ((provisioning, "PROVISIONING"), (cancelled, "CANCELLED")):
        assert (await orders_hub.client.get(f"{ORDERS}/{oid}", headers=operator)).json()["status"] == status


async def test_a_dead_lettered_order_event_fails_the_order_but_a_dead_log_line_does_not(
    orders_hub, operator, bus, sessions
):
    allocating = await insert_order(sessions, status=OrderStatus.AWAITING_SERVER)
    provisioning = await insert_order(sessions, status=OrderStatus.PROVISIONING)

    def dead(event_type: str, correlation: uuid.UUID) -> DeadLetteredV1:
        return DeadLetteredV1(
            consumer=f"someone-on-{event_type}",
            original_subject=f"{bus.namespace}.x.v1",
            error="RuntimeError: boom",
            deliveries=8,
            event_id=uuid.uuid4(),
            event_type=event_type,
            correlation_id=str(correlation),
            raw="{}",
        )

    await bus.publish(dead("order-created", allocating), correlation_id=allocating)
    await bus.publish(dead("provisioning-log", provisioning), correlation_id=provisioning)
    got = await _wait_status(orders_hub, operator, allocating, "FAILED")
    assert (
        got["failed_stage"] == "ALLOCATION" and "gave up on order-created after 8 deliveries" in got["failure_reason"]
    )
    await eventually(lambda: consumer_idle(bus, "hub-on-dead-lettered"))
    assert (await orders_hub.client.get(f"{ORDERS}/{provisioning}", headers=operator)).json()[
        "status"
    ] == "PROVISIONING"


async def test_an_event_for_an_order_the_hub_does_not_know_is_dead_lettered_visibly(orders_hub, bus):
    ghost = OrderSpec(
        order_id=uuid.uuid4(),
        domain="ghost.test",
        tier="lite",
        region="eu",
        tools=("ghost",),
        automation_mode="AUTO",
        customer_email="a@b.test",
    )
    await bus.publish(ServerAllocatedV1(order=ghost, server=server_target()), correlation_id=ghost.order_id)
    await eventually(lambda: published(bus, DeadLetteredV1.SUBJECT))


async def test_provisioning_steps_and_log_lines_are_stored_once_in_order(orders_hub, bus, sessions):
    oid = await insert_order(sessions, status=OrderStatus.PROVISIONING)
    job = uuid.uuid4()
    step = ProvisioningStepV1(order_id=oid, job_id=job, step=2, name="docker", status=StepStatus.RUNNING, attempt=1)
    lines = [
        ProvisioningLogV1(order_id=oid, job_id=job, step=2, seq=i, stream="stdout", line=f"line {i}") for i in range(5)
    ]
    await bus.publish(step, correlation_id=oid)
    await bus.publish(step, correlation_id=oid)  # republished with a new event id: still one row
    for line in [*lines, lines[1], lines[3]]:
        await bus.publish(line, correlation_id=oid)
    await eventually(lambda: consumer_idle(bus, "hub-on-provisioning-log"))
    await eventually(lambda: consumer_idle(bus, "hub-on-provisioning-step"))
    async with sessions() as s:
        rows = (await s.execute(text("SELECT kind, payload FROM hub.provisioning_progress ORDER BY id"))).all()
    # Steps and log lines come through two consumers: their interleaving is not fixed; each is stored once, in order.
    assert [p.get("step") for k, p in rows if k == "step"] == [2]
    assert [p.get("seq") for k, p in rows if k == "log"] == list(range(5))
