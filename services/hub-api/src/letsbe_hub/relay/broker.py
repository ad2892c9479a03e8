"""The relay's messages in NATS JetStream, so any hub replica serves either end of a conversation.

One stream (``<NAMESPACE>_RELAY``), two subjects per tenant: ``<namespace>_relay.<tenant>.to-agent`` (what its
customers said) and ``….to-customer`` (what its agent answered). A message's id is its stream sequence: increasing
in the order the stream stored it, so a reader that resumes "after id N" (an ordered consumer starting at N + 1)
gets exactly the messages it has not seen, in order. A sender's message is published with ``Nats-Msg-Id`` =
tenant, direction and the sender's own id: the same message sent again after a reconnect (its acceptance was lost)
is stored once, and the sender is told the id it got the first time.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Literal

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import ConsumerConfig, DeliverPolicy, DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError

from letsbe_hub.config import HubSettings
from letsbe_platform.bus import Bus

Direction = Literal["to-agent", "to-customer"]


class RelayBroker:
    def __init__(self, bus: Bus, settings: HubSettings):
        self.bus = bus
        self.settings = settings
        self.stream = f"{bus.namespace.upper()}_RELAY"
        self.root = f"{bus.namespace}_relay"  # not under the events stream's "<namespace>.>"

    def subject(self, tenant_id: uuid.UUID, direction: Direction) -> str:
        return f"{self.root}.{tenant_id}.{direction}"

    async def ensure_stream(self) -> None:
        s = self.settings
        config = StreamConfig(
            name=self.stream,
            subjects=[f"{self.root}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=s.relay_retention_seconds,
            max_msgs_per_subject=s.relay_retained_per_tenant,
            max_msg_size=s.relay_max_message_bytes + 1024,
            discard=DiscardPolicy.OLD,
            duplicate_window=15 * 60,
            num_replicas=self.bus.replicas,
        )
        try:
            await self.bus.js.add_stream(config)
        except BadRequestError:
            await self.bus.js.update_stream(config)

    async def publish(self, tenant_id: uuid.UUID, direction: Direction, sender_id: str, data: bytes) -> int:
        """Store one message; its id (the first one's, for a resent message)."""
        ack = await self.bus.js.publish(
            self.subject(tenant_id, direction), data, stream=self.stream,
            headers={"Nats-Msg-Id": f"{tenant_id}:{direction}:{sender_id}"},
        )
        return ack.seq

    async def follow(
        self, tenant_id: uuid.UUID, direction: Direction, after: int | None, cb: Callable[[Msg], Awaitable[None]]
    ) -> Subscription:
        """Every message of the subject with an id above ``after`` (None: from now on), in order, to ``cb``."""
        config = (ConsumerConfig(deliver_policy=DeliverPolicy.NEW) if after is None else
                  ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1))
        return await self.bus.js.subscribe(
            self.subject(tenant_id, direction), stream=self.stream, cb=cb, ordered_consumer=True, config=config,
            # Bounded in the client too: the connection closes a slow reader long before these fill.
            pending_msgs_limit=4 * self.settings.relay_max_unacked + 64,
        )
