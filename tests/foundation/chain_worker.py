"""A minimal service process for the foundation test: consumes order-created, records a side effect, emits
server-allocated through its own outbox — exactly the shape every real worker has. Run as a script."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid

from sqlalchemy import text

from letsbe_contracts import OrderCreatedV1, ServerAllocatedV1, ServerTarget
from letsbe_platform.bus import Bus, Delivery
from letsbe_platform.db import make_engine, make_metadata, make_session_factory, unit_of_work
from letsbe_platform.outbox import OutboxRelay, add_event, claim, inbox_table, outbox_table

SCHEMA = "dns"  # borrows a worker schema's outbox/inbox tables; the side-effect table is the test's own
md = make_metadata(SCHEMA)
outbox = outbox_table(md)
inbox = inbox_table(md)
DURABLE = "chain-on-order-created"


async def main() -> None:
    url, nats_url, ns = os.environ["DATABASE_URL"], os.environ["NATS_URL"], os.environ["LETSBE_BUS_NAMESPACE"]
    delay = float(os.environ.get("CHAIN_DELAY", "0.01"))
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    bus = await Bus.connect(nats_url, namespace=ns)

    async def handle(event: OrderCreatedV1, delivery: Delivery) -> None:
        async with unit_of_work(sessions) as session:
            if not await claim(session, inbox, DURABLE, delivery.event_id):
                return
            await session.execute(
                text("INSERT INTO public.side_effects (order_id, pid) VALUES (:o, :p)"),
                {"o": event.order.order_id, "p": os.getpid()},
            )
            await asyncio.sleep(delay)  # the work; a kill -9 here must lose nothing and double nothing
            server = ServerTarget(
                server_id=uuid.uuid5(uuid.NAMESPACE_URL, str(event.order.order_id)),
                provider="netcup",
                provider_ref="pool-1",
                ipv4="127.0.0.1",
                host_key_fingerprint="SHA256:" + "B" * 43,
            )
            await add_event(
                session,
                outbox,
                ServerAllocatedV1(order=event.order, server=server),
                correlation_id=delivery.correlation_id,
            )

    consumer = bus.consumer(DURABLE, OrderCreatedV1, handle, ack_wait=2)
    relay = OutboxRelay(url, SCHEMA, bus)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    tasks = [asyncio.create_task(consumer.run()), asyncio.create_task(relay.run())]
    print("ready", flush=True)
    await stop.wait()
    consumer.stop()
    relay.stop()
    await asyncio.gather(*tasks)
    await bus.close()
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
