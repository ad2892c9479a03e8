"""What a bus stream holds right now, for tests and the sandbox's checks."""

from __future__ import annotations

from nats.js.errors import NotFoundError

from letsbe_contracts import Envelope, Event
from letsbe_platform.bus import Bus


async def stream_envelopes(bus: Bus, subject_or_event: str | type[Event]) -> list[Envelope]:
    """Every envelope of one subject in the bus's stream, in stream order, read with a fresh consumer.

    Reads until the consumer has nothing pending instead of waiting out a quiet second: the stream says how many
    messages it holds, so the read ends as soon as it has them all.
    """
    subject = bus.subject(subject_or_event)
    try:
        await bus.js.get_last_msg(bus.stream, subject)
    except NotFoundError:
        return []
    sub = await bus.js.subscribe(subject, stream=bus.stream, ordered_consumer=True)
    out: list[Envelope] = []
    try:
        while True:
            msg = await sub.next_msg(timeout=10)
            out.append(Envelope.model_validate_json(msg.data))
            if msg.metadata.num_pending == 0:
                return out
    finally:
        await sub.unsubscribe()
