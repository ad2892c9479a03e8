"""The typed bus against a real NATS JetStream server."""

import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import make_url, text

from letsbe_contracts import DeadLetteredV1, Envelope, OrderCreatedV1, OrderSpec, decode
from letsbe_platform import devstack
from letsbe_platform.bus import Bus, Consumer, Delivery, PermanentError
from letsbe_platform.db import make_engine
from letsbe_platform.testing import eventually, free_port


def order_created() -> OrderCreatedV1:
    return OrderCreatedV1(
        order=OrderSpec(
            order_id=uuid.uuid4(),
            domain="example.com",
            tier="build",
            region="eu",
            tools=("ghost",),
            automation_mode="AUTO",
            customer_email="a@example.com",
        )
    )


async def collect(bus: Bus, subject_event, n: int, timeout: float = 10.0) -> list[Envelope]:
    """Read n envelopes of a subject straight from the stream with an ephemeral consumer."""
    sub = await bus.js.subscribe(bus.subject(subject_event), stream=bus.stream, ordered_consumer=True)
    out: list[Envelope] = []
    try:
        async with asyncio.timeout(timeout):
            while len(out) < n:
                msg = await sub.next_msg(timeout=timeout)
                out.append(Envelope.model_validate_json(msg.data))
    finally:
        await sub.unsubscribe()
    return out


async def run_until(consumer, condition, timeout: float = 10.0) -> None:
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(condition, timeout=timeout, every=0.02)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 5)


async def test_publish_with_the_same_event_id_is_stored_once(bus: Bus):
    event = order_created()
    event_id = uuid.uuid4()
    for _ in range(3):
        await bus.publish(event, correlation_id="c", event_id=event_id)
    info = await bus.js.stream_info(bus.stream)
    assert info.state.messages == 1


async def test_subjects_live_under_the_namespace(bus: Bus, bus_namespace: str):
    assert bus.subject(OrderCreatedV1) == f"{bus_namespace}.order.created.v1"
    with pytest.raises(ValueError):
        bus.subject("other.order.created.v1")


async def test_handler_receives_validated_model_and_message_is_acked(bus: Bus):
    seen: list[tuple[OrderCreatedV1, Delivery]] = []

    async def handle(event: OrderCreatedV1, delivery: Delivery) -> None:
        seen.append((event, delivery))

    sent = order_created()
    env = await bus.publish(sent, correlation_id="order-1")
    consumer = bus.consumer("test-on-order-created", OrderCreatedV1, handle)
    await run_until(consumer, lambda: len(seen) == 1)
    event, delivery = seen[0]
    assert event == sent and isinstance(event, OrderCreatedV1)
    assert delivery.event_id == env.id and delivery.correlation_id == "order-1" and delivery.num_delivered == 1

    async def acked() -> bool:  # the server applies an ack after it arrives: seen soon, not necessarily at once
        info = await bus.js.consumer_info(bus.stream, "test-on-order-created")
        return info.num_ack_pending == 0 and info.num_pending == 0

    await eventually(acked, "the message acked")


async def test_a_stopped_consumer_finishes_the_message_in_hand_and_does_not_wait_out_its_idle_pulls(bus: Bus):
    in_hand, release, done = asyncio.Event(), asyncio.Event(), []

    async def handle(event: OrderCreatedV1, delivery: Delivery) -> None:
        in_hand.set()
        await release.wait()
        done.append(event)

    await bus.publish(order_created(), correlation_id="order-4")
    consumer = bus.consumer("test-stop", OrderCreatedV1, handle, concurrency=8)
    consumer.pull_seconds = 60  # a stop that waited them out would take a minute, not a loaded moment
    task = asyncio.create_task(consumer.run())
    await asyncio.wait_for(in_hand.wait(), 10)
    consumer.stop()
    release.set()
    # The seven idle loops have just opened their pulls: stopping must not wait for those to expire.
    await asyncio.wait_for(task, 20)
    assert len(done) == 1

    async def acked() -> bool:  # the server applies the ack after it arrives: seen soon, not necessarily at once
        info = await bus.js.consumer_info(bus.stream, "test-stop")
        return info.num_ack_pending == 0 and info.num_pending == 0

    await eventually(acked, "the message in hand acked")


async def test_malformed_message_is_dead_lettered_with_its_error_and_the_consumer_goes_on(bus: Bus):
    handled: list[OrderCreatedV1] = []

    async def handle(event: OrderCreatedV1, delivery: Delivery) -> None:
        handled.append(event)

    subject = OrderCreatedV1.SUBJECT
    await bus.publish_raw(subject, b"{not json", msg_id="bad-1")
    bad_payload = order_created().envelope(correlation_id="order-9").model_dump(mode="json")
    bad_payload["payload"]["order"]["tier"] = "gigantic"
    await bus.publish_raw(subject, Envelope.model_validate(bad_payload).model_dump_json().encode(), msg_id="bad-2")
    good = order_created()
    await bus.publish(good, correlation_id="order-10")

    consumer = bus.consumer("test-malformed", OrderCreatedV1, handle)
    await run_until(consumer, lambda: len(handled) == 1)
    dead = [decode(e) for e in await collect(bus, DeadLetteredV1, 2)]
    assert handled == [good]
    assert all(isinstance(d, DeadLetteredV1) and d.consumer == "test-malformed" for d in dead)
    assert "invalid message" in dead[0].error and dead[0].event_id is None and dead[0].raw == "{not json"
    assert "order.tier" in dead[1].error and dead[1].correlation_id == "order-9"


async def test_failing_handler_is_retried_with_backoff_then_dead_lettered(bus: Bus):
    attempts: list[int] = []

    async def handle(event: OrderCreatedV1, delivery: Delivery) -> None:
        attempts.append(delivery.num_delivered)
        raise RuntimeError("provider down")

    await bus.publish(order_created(), correlation_id="order-2")
    consumer = bus.consumer("test-retry", OrderCreatedV1, handle, max_deliver=3, backoff=(0.05, 0.05))
    await run_until(consumer, lambda: len(attempts) == 3)
    [dead] = [decode(e) for e in await collect(bus, DeadLetteredV1, 1)]
    assert attempts == [1, 2, 3]
    assert dead.deliveries == 3 and "provider down" in dead.error and dead.correlation_id == "order-2"


async def test_permanent_error_dead_letters_at_once(bus: Bus):
    attempts: list[int] = []

    async def handle(event: OrderCreatedV1, delivery: Delivery) -> None:
        attempts.append(delivery.num_delivered)
        raise PermanentError("domain is not ours")

    await bus.publish(order_created(), correlation_id="order-3")
    consumer = bus.consumer("test-permanent", OrderCreatedV1, handle, max_deliver=5, backoff=(0.05,))
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: len(attempts) == 1, "the first attempt", every=0.02)
        [dead] = [decode(e) for e in await collect(bus, DeadLetteredV1, 1)]
        assert dead.error == "domain is not ours" and dead.deliveries == 1

        async def settled():  # the server holds nothing more to deliver to the (still running) consumer
            info = await bus.js.consumer_info(bus.stream, "test-permanent")
            return info.num_pending == 0 and info.num_ack_pending == 0 and info

        info = await eventually(settled, "the message terminated", timeout=20)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 5)
    assert attempts == [1] and info.num_redelivered == 0


async def test_ensure_stream_is_idempotent(bus: Bus):
    await bus.ensure_stream()
    await bus.ensure_stream()
    assert (await bus.js.stream_info(bus.stream)).config.subjects == [f"{bus.namespace}.>"]


async def test_every_listener_hears_each_event_as_it_is_published_and_garbage_is_ignored(
    bus: Bus, nats_url: str, bus_namespace: str
):
    """Notifications fan out to every process (plain NATS, no durable consumer); a bad message breaks nothing."""
    other = await Bus.connect(nats_url, namespace=bus_namespace, name="pytest-other")
    heard: dict[str, list[uuid.UUID]] = {"this": [], "other": []}
    try:
        subs = [
            await bus.listen(OrderCreatedV1, lambda e: heard["this"].append(e.order.order_id)),
            await other.listen(OrderCreatedV1, lambda e: heard["other"].append(e.order.order_id)),
        ]
        await bus.nc.flush()
        await other.nc.flush()
        await bus.publish_raw(OrderCreatedV1.SUBJECT, b"not an envelope", msg_id=str(uuid.uuid4()))
        event = order_created()
        await bus.publish(event, correlation_id="c")
        async with asyncio.timeout(10):
            while not (heard["this"] and heard["other"]):
                await asyncio.sleep(0.01)
        assert heard == {"this": [event.order.order_id], "other": [event.order.order_id]}
        for sub in subs:
            await sub.unsubscribe()
    finally:
        await other.close()


async def _forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def test_a_handler_cut_off_by_a_postgres_outage_runs_again_as_soon_as_postgres_answers(
    bus: Bus, database_url: str
):
    """Postgres restarting is not the event's fault: the same delivery is held and run again when Postgres
    answers, without spending the event's attempts or waiting out the backoff (a minute here)."""
    real = make_url(database_url)
    port = free_port()  # Postgres "restarting": nothing listens here until the test opens the way to the real one
    engine = make_engine(real.set(port=port).render_as_string(hide_password=False), pool_size=1)
    attempts: list[int] = []
    handled = asyncio.Event()

    async def handle(event: OrderCreatedV1, delivery: Delivery) -> None:
        attempts.append(delivery.num_delivered)
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT 1")) == 1
        handled.set()

    async def to_postgres(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(real.host, real.port)
        await asyncio.gather(_forward(reader, up_writer), _forward(up_reader, writer))

    await bus.publish(order_created(), correlation_id="order-outage")
    consumer = bus.consumer("test-outage", OrderCreatedV1, handle, max_deliver=2, backoff=(60.0,))
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: len(attempts) >= 3, "the handler failing while Postgres is unreachable", every=0.02)
        async with await asyncio.start_server(to_postgres, "127.0.0.1", port):
            await eventually(handled.is_set, "the handler run again once Postgres answers", timeout=10, every=0.02)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 5)
        await engine.dispose()
    assert set(attempts) == {1}  # one delivery throughout: never nak'ed, so never dead-lettered
    info = await bus.js.consumer_info(bus.stream, "test-outage")
    assert info.num_redelivered == 0 and info.num_ack_pending == 0


@contextlib.asynccontextmanager
async def own_node(
    tmp_path: Path, durable: str
) -> AsyncIterator[tuple[devstack.Nats, Bus, Consumer, list[OrderCreatedV1]]]:
    """A NATS node of the test's own (to stop or kill), a bus on it, and a consumer that records what it handles."""
    node = devstack.Nats(tmp_path / "nats", free_port(), free_port())
    node.start()
    try:
        bus = await Bus.connect(node.url, namespace=f"{durable}{uuid.uuid4().hex[:8]}")
        seen: list[OrderCreatedV1] = []

        async def handler(event: OrderCreatedV1, delivery: Delivery) -> None:
            seen.append(event)

        yield node, bus, bus.consumer(durable, OrderCreatedV1, handler), seen
        await bus.close()
    finally:
        node.stop()


async def test_a_consumer_started_while_jetstream_does_not_answer_subscribes_once_it_does(tmp_path):
    """A node still electing its leaders (or restarting) leaves the first subscribe unanswered: the consumer tries
    again and is not ready meanwhile, instead of dying for the life of the process."""
    async with own_node(tmp_path, "late") as (node, bus, consumer, seen):
        bus.js = bus.nc.jetstream(timeout=0.5)  # the API's timeout short: the test need not wait out the real one
        pid = node.pid()
        assert pid is not None
        attempts: list[str] = []
        subscribe = bus.js.pull_subscribe

        async def counted(*args, **kwargs):
            attempts.append(kwargs["durable"])
            return await subscribe(*args, **kwargs)

        bus.js.pull_subscribe = counted  # type: ignore[method-assign]
        os.kill(pid, signal.SIGSTOP)  # it keeps its connections and answers nothing
        # kill() returns before the stop takes effect: the first subscribe must not be answered in between.
        await eventually(lambda: "\nState:\tT" in Path(f"/proc/{pid}/status").read_text(), "nats-server stopped")
        task = asyncio.create_task(consumer.run())
        try:

            def retried() -> bool:
                assert not task.done() or task.exception() is None, task  # the consumer must not have died
                return len(attempts) >= 2

            await eventually(retried, f"a second subscribe after the first timed out ({attempts})", timeout=30)
            assert not consumer.subscribed and not task.done()
        finally:
            os.kill(pid, signal.SIGCONT)
        await eventually(lambda: consumer.subscribed, "the consumer subscribed", timeout=20)
        event = order_created()
        await bus.publish(event, correlation_id="late")
        await eventually(lambda: seen == [event], "the event handled", timeout=10)
        consumer.stop()
        await asyncio.wait_for(task, 5)


async def test_a_consumer_pulls_again_as_soon_as_nats_is_back_not_when_its_lost_pull_would_have_expired(tmp_path):
    """A pull open on a NATS node that restarts is gone with the old connection. The consumer opens a new one at the
    reconnection: an event published after the restart is handled at once, not after the pull's whole timeout."""
    async with own_node(tmp_path, "back") as (node, bus, consumer, seen):
        consumer.pull_seconds = 600  # a consumer that waited out its lost pull would miss the test's timeout
        task = asyncio.create_task(consumer.run())
        await eventually(lambda: consumer.subscribed, "the consumer subscribed")
        pid = node.pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await eventually(lambda: not bus.nc.is_connected, "the connection to the killed node lost")
        node.start()  # the same ports and store: the stream and the durable consumer come back with it
        await eventually(lambda: bus.nc.is_connected, "reconnected to the restarted node", timeout=30)
        event = order_created()
        await bus.publish(event, correlation_id="back")
        await eventually(lambda: seen == [event], "the event handled after the restart", timeout=30)
        consumer.stop()
        await asyncio.wait_for(task, 5)
