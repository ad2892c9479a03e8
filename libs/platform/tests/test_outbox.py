"""Outbox and inbox against real Postgres and NATS."""

import asyncio
import uuid

from sqlalchemy import func, select, text

from letsbe_contracts import Envelope, OrderCreatedV1, OrderSpec
from letsbe_platform.bus import Bus
from letsbe_platform.db import make_metadata, unit_of_work
from letsbe_platform.outbox import OutboxRelay, add_event, claim, inbox_table, outbox_table
from letsbe_platform.testing import eventually

md = make_metadata("hub")
outbox = outbox_table(md)
inbox = inbox_table(md)


def order_created() -> OrderCreatedV1:
    return OrderCreatedV1(
        order=OrderSpec(
            order_id=uuid.uuid4(),
            domain="example.com",
            tier="lite",
            region="us",
            tools=(),
            automation_mode="MANUAL",
            customer_email="a@example.com",
        )
    )


async def stream_count(bus: Bus) -> int:
    return (await bus.js.stream_info(bus.stream)).state.messages


async def unpublished(sessions) -> int:
    async with unit_of_work(sessions) as s:
        return (
            await s.execute(select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None)))
        ).scalar_one()


async def all_published(sessions) -> bool:
    return await unpublished(sessions) == 0


async def test_event_is_not_published_when_the_business_transaction_rolls_back(sessions, database_url, bus):
    class Boom(Exception):
        pass

    try:
        async with unit_of_work(sessions) as s:
            await add_event(s, outbox, order_created(), correlation_id="x")
            raise Boom
    except Boom:
        pass
    relay = OutboxRelay(database_url, "hub", bus)
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        assert await relay.publish_pending(conn) == 0
    finally:
        await conn.close()
    assert await stream_count(bus) == 0


async def test_relay_publishes_committed_events_once_and_marks_them_sent(sessions, database_url, bus):
    async with unit_of_work(sessions) as s:
        ids = [await add_event(s, outbox, order_created(), correlation_id=f"o{i}") for i in range(25)]
    relay = OutboxRelay(database_url, "hub", bus, batch=10)
    task = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: all_published(sessions), "every row published")
    finally:
        relay.stop()
        await task
    assert await stream_count(bus) == 25
    sub = await bus.js.subscribe(bus.subject(OrderCreatedV1), stream=bus.stream, ordered_consumer=True)
    got = [Envelope.model_validate_json((await sub.next_msg(timeout=5)).data).id for _ in range(25)]
    await sub.unsubscribe()
    assert got == ids  # in commit order


async def test_relay_crash_after_publishing_before_marking_publishes_nothing_twice(sessions, database_url, bus):
    """The crash window of every outbox: the broker has the message, the row still says unsent."""
    async with unit_of_work(sessions) as s:
        await add_event(s, outbox, order_created(), correlation_id="crash")

    class Crash(Exception):
        pass

    class CrashingBus:
        """The real bus, but the process 'dies' right after the publish reached JetStream."""

        def __init__(self, real: Bus):
            self.real = real

        async def publish_raw(self, subject, data, *, msg_id):
            await self.real.publish_raw(subject, data, msg_id=msg_id)
            raise Crash

    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        crashing = OutboxRelay(database_url, "hub", CrashingBus(bus))  # type: ignore[arg-type]
        try:
            await crashing.publish_pending(conn)
        except Crash:
            pass
        assert await unpublished(sessions) == 1  # the mark was rolled back with the "crash"
        restarted = OutboxRelay(database_url, "hub", bus)
        assert await restarted.publish_pending(conn) == 1
    finally:
        await conn.close()
    assert await unpublished(sessions) == 0
    assert await stream_count(bus) == 1  # JetStream de-duplicated the second publish by Nats-Msg-Id


class Counting(OutboxRelay):
    """A relay that counts its reads of the outbox."""

    reads = 0

    async def publish_pending(self, conn):
        self.reads += 1
        return await super().publish_pending(conn)


async def test_relay_wakes_on_commit_without_waiting_for_the_poll(sessions, database_url, bus):
    relay = Counting(database_url, "hub", bus, poll_seconds=30)
    task = asyncio.create_task(relay.run())
    try:
        # Its first read found nothing (it listens from before that read): only the NOTIFY can wake it now.
        await eventually(lambda: relay.reads >= 1, "the relay's first read", timeout=20, every=0.01)
        async with unit_of_work(sessions) as s:
            await add_event(s, outbox, order_created(), correlation_id="wake")
        # Well under the 30 s poll, with room for a loaded machine.
        await eventually(lambda: stream_count(bus), "a message on the stream", timeout=10, every=0.02)
    finally:
        relay.stop()
        await task


async def test_a_commit_notified_while_the_relay_reads_is_published_without_waiting_for_the_poll(
    sessions, database_url, bus
):
    """The NOTIFY of a commit that lands after the relay's read found nothing must not be cleared unseen."""
    notified = asyncio.Event()

    class CommitDuringRead(OutboxRelay):
        reads = 0

        async def publish_pending(self, conn):
            sent = await super().publish_pending(conn)
            self.reads += 1
            if self.reads == 1:  # nothing to send yet; an event commits before this read "returns"
                async with unit_of_work(sessions) as s:
                    await add_event(s, outbox, order_created(), correlation_id="during-read")
                while not self.worker._wake.is_set():  # its NOTIFY has reached the relay
                    await asyncio.sleep(0.01)
                notified.set()
            return sent

    relay = CommitDuringRead(database_url, "hub", bus, poll_seconds=3600)  # only the wake-up can publish it
    task = asyncio.create_task(relay.run())
    try:
        async with asyncio.timeout(20):
            await notified.wait()
            while await stream_count(bus) < 1:
                await asyncio.sleep(0.02)
    finally:
        relay.stop()
        await task


async def test_a_commit_whose_notification_is_lost_is_published_by_the_poll(sessions, database_url, bus):
    relay = Counting(database_url, "hub", bus, poll_seconds=0.1)
    task = asyncio.create_task(relay.run())
    try:
        async with asyncio.timeout(20):
            while relay.reads < 1:  # it has looked once and found nothing: now it waits
                await asyncio.sleep(0.01)
            async with unit_of_work(sessions) as s:  # the row as add_event writes it, but without its NOTIFY
                env = order_created().envelope(correlation_id="silent")
                await s.execute(
                    outbox.insert().values(
                        event_id=env.id, subject=OrderCreatedV1.SUBJECT, envelope=env.model_dump(mode="json")
                    )
                )
            while await stream_count(bus) < 1:
                await asyncio.sleep(0.02)
    finally:
        relay.stop()
        await task


async def test_same_deterministic_event_id_is_staged_once(sessions):
    event_id = uuid.uuid4()
    for _ in range(2):
        async with unit_of_work(sessions) as s:
            await add_event(s, outbox, order_created(), correlation_id="x", event_id=event_id)
    assert await unpublished(sessions) == 1


async def test_inbox_claim_is_true_once_per_consumer(sessions):
    event_id = uuid.uuid4()
    async with unit_of_work(sessions) as s:
        assert await claim(s, inbox, "a", event_id) is True
        assert await claim(s, inbox, "a", event_id) is False
        assert await claim(s, inbox, "b", event_id) is True


async def claims_waiting(engine, n: int) -> bool:
    """Whether ``n`` sessions of this database wait for another transaction's lock."""
    async with engine.connect() as conn:
        waiting = await conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
        return waiting.scalar_one() >= n


async def test_concurrent_claims_of_one_event_let_exactly_one_side_effect_through(sessions, engine):
    """Two workers handling the same redelivered event at once: one commits, the other waits and finds the claim."""
    event_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE public.effects (event_id uuid)"))

    async def worker() -> bool:
        async with unit_of_work(sessions) as s:
            if not await claim(s, inbox, "c", event_id):
                return False
            # Commit only once the four others are blocked on this claim: the race is run, whatever the load.
            await eventually(lambda: claims_waiting(engine, 4), "four claims waiting on the first", timeout=20)
            await s.execute(text("INSERT INTO public.effects VALUES (:e)"), {"e": event_id})
            return True

    results = await asyncio.gather(*(worker() for _ in range(5)))
    async with engine.connect() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM public.effects"))).scalar_one()
    assert sorted(results) == [False] * 4 + [True] and count == 1
