"""Typed JetStream bus: one stream per namespace, publish with de-duplication, durable pull consumers.

A consumer hands its handler a validated event. What cannot be decoded goes to the dead-letter subject at once,
with the validation error; what keeps failing goes there after ``max_deliver`` attempts, each retry delayed by
the backoff list. A dead letter is itself a :class:`DeadLetteredV1` event, so it is visible and can fail the order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError
from pydantic import ValidationError
from structlog.contextvars import bind_contextvars, bound_contextvars

from letsbe_contracts import DeadLetteredV1, Envelope, Event, decode
from letsbe_contracts.events import SUBJECT_ROOT
from letsbe_platform.logging import get_logger
from letsbe_platform.metrics import EVENT_HANDLING_SECONDS, EVENTS_DEAD_LETTERED
from letsbe_platform.outages import infrastructure_down
from letsbe_platform.waiting import Backoff

log = get_logger(__name__)

DEFAULT_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
# A handler that failed because Postgres or NATS is down runs again after these pauses (doubling), for this long.
OUTAGE_FIRST_PAUSE, OUTAGE_MAX_PAUSE, OUTAGE_PATIENCE = 0.1, 2.0, 300.0
# A consumer whose JetStream does not answer yet tries to subscribe again after these pauses.
SUBSCRIBE_BACKOFF = Backoff(0.2, 5.0)


class PermanentError(Exception):
    """Raised by a handler when retrying cannot help: the message is dead-lettered at once."""


@dataclass(frozen=True)
class Delivery:
    """What a handler knows about the message besides the event itself."""

    envelope: Envelope
    subject: str
    num_delivered: int
    msg: Msg
    consumer: str  # the durable name: an inboxed handler's row in the inbox, and its actor

    @property
    def event_id(self) -> uuid.UUID:
        return self.envelope.id

    @property
    def correlation_id(self) -> str:
        return self.envelope.correlation_id

    async def in_progress(self) -> None:
        """Tell JetStream the work goes on, so a long handler (an SSH step) is not redelivered meanwhile."""
        await self.msg.in_progress()


Handler = Callable[[Any, Delivery], Awaitable[None]]
E = TypeVar("E", bound=Event)


class Bus:
    def __init__(self, nc: NATS, namespace: str = SUBJECT_ROOT, replicas: int = 1):
        self.nc = nc
        self.replicas = replicas  # 3 on the production cluster (LETSBE_BUS_REPLICAS), 1 on a single node
        self.js: JetStreamContext = nc.jetstream(timeout=10)
        self.namespace = namespace
        self.stream = f"{namespace.upper()}_EVENTS"
        self._reconnected: asyncio.Future[None] | None = None

    @classmethod
    async def connect(cls, url: str, *, namespace: str = SUBJECT_ROOT, name: str = "letsbe", replicas: int = 1) -> Bus:
        bus: Bus | None = None

        async def reconnected() -> None:
            if bus is not None:
                bus._tell_reconnected()

        nc = await nats.connect(
            # "nats://a:4222,nats://b:4222" names every node of a cluster, so a start survives one node down.
            servers=[u.strip() for u in url.split(",") if u.strip()],
            name=name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=5,
            allow_reconnect=True,
            reconnected_cb=reconnected,
        )
        bus = cls(nc, namespace, replicas)
        await bus.ensure_stream()
        return bus

    def reconnected(self) -> asyncio.Future[None]:
        """Done at the next reconnection to NATS. A pull open on the server is gone with the old connection (a node
        restarted or left): its consumer pulls again then, instead of when its pull would have expired."""
        if self._reconnected is None or self._reconnected.done():
            self._reconnected = asyncio.get_running_loop().create_future()
        return self._reconnected

    def _tell_reconnected(self) -> None:
        if self._reconnected is not None and not self._reconnected.done():
            self._reconnected.set_result(None)

    # --- names -------------------------------------------------------------------------------------------

    def subject(self, subject_or_event: str | type[Event] | Event) -> str:
        """The namespaced subject: ``letsbe.order.created.v1`` stays as is under the default namespace."""
        s = subject_or_event if isinstance(subject_or_event, str) else subject_or_event.SUBJECT
        if not s.startswith(SUBJECT_ROOT + "."):
            raise ValueError(f"subject {s!r} is not under {SUBJECT_ROOT!r}")
        return self.namespace + s[len(SUBJECT_ROOT) :]

    @property
    def dead_letter_subject(self) -> str:
        return self.subject(DeadLetteredV1)

    # --- stream --------------------------------------------------------------------------------------------

    async def ensure_stream(self) -> None:
        """Create or update the stream; safe to call from every process at every start."""
        config = StreamConfig(
            name=self.stream,
            subjects=[f"{self.namespace}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=7 * 24 * 3600,
            duplicate_window=15 * 60,
            num_replicas=self.replicas,
        )
        try:
            await self.js.add_stream(config)
        except BadRequestError:
            await self.js.update_stream(config)

    async def delete_stream(self) -> None:
        try:
            await self.js.delete_stream(self.stream)
        except NotFoundError:
            pass

    # --- publish -------------------------------------------------------------------------------------------

    async def publish(
        self, event: Event, *, correlation_id: str | uuid.UUID, event_id: uuid.UUID | None = None
    ) -> Envelope:
        """Publish directly (no database involved). Services that change state use the outbox instead."""
        env = event.envelope(correlation_id=correlation_id, event_id=event_id)
        await self.publish_raw(event.SUBJECT, env.model_dump_json().encode(), msg_id=str(env.id))
        return env

    async def publish_raw(self, subject: str, data: bytes, *, msg_id: str) -> None:
        await self.js.publish(self.subject(subject), data, headers={"Nats-Msg-Id": msg_id})

    # --- consume -------------------------------------------------------------------------------------------

    def consumer(
        self,
        durable: str,
        event: type[Event],
        handler: Handler,
        *,
        max_deliver: int = 8,
        backoff: Sequence[float] = DEFAULT_BACKOFF,
        ack_wait: float = 30.0,
        concurrency: int = 1,
        deliver_new_only: bool = False,
    ) -> Consumer:
        return Consumer(
            self,
            durable=durable,
            event=event,
            handler=handler,
            max_deliver=max_deliver,
            backoff=tuple(backoff),
            ack_wait=ack_wait,
            concurrency=concurrency,
            deliver_new_only=deliver_new_only,
        )

    async def listen(self, event: type[E], callback: Callable[[E], None]) -> Subscription:
        """Call ``callback`` with each ``event`` as it is published, in every process that listens: a plain NATS
        subscription to the subject, not a JetStream consumer, so nothing is stored, acknowledged or redelivered.
        For notifications whose loss costs a poll interval (``letsbe_platform.waiting``); what must not be lost
        goes through a durable consumer."""

        async def deliver(msg: Msg) -> None:
            try:
                decoded = decode(Envelope.model_validate_json(msg.data))
            except (ValidationError, LookupError, ValueError) as exc:
                log.warning("notification ignored", subject=msg.subject, error=_describe(exc)[:300])
                return
            if isinstance(decoded, event):
                callback(decoded)

        return await self.nc.subscribe(self.subject(event), cb=deliver)

    async def close(self) -> None:
        if self.nc.is_connected:
            await self.nc.drain()


class Consumer:
    """A durable pull consumer of one event type. ``run()`` until ``stop()``; in-flight messages finish first.

    ``concurrency`` fetchers share the durable (and so do replicas in other processes): each handles one message
    at a time, so handlers must not assume order across messages.
    """

    # How long one idle pull waits on the server for a message (which it gets at once when one comes): each expiry
    # costs a round trip, so an idle service with tens of consumers woke NATS and itself tens of times a second at
    # 1 s. A reconnection ends the pulls early (Bus.reconnected).
    pull_seconds = 5.0

    def __init__(
        self,
        bus: Bus,
        *,
        durable: str,
        event: type[Event],
        handler: Handler,
        max_deliver: int,
        backoff: tuple[float, ...],
        ack_wait: float,
        concurrency: int,
        deliver_new_only: bool,
    ):
        if not durable.replace("-", "").isalnum():
            raise ValueError("durable names are letters, digits and dashes")
        self.bus = bus
        self.durable = durable
        self.event = event
        self.handler = handler
        self.max_deliver = max_deliver
        self.backoff = backoff or (1.0,)
        self.ack_wait = ack_wait
        self.concurrency = concurrency
        self.deliver_new_only = deliver_new_only
        EVENTS_DEAD_LETTERED.labels(durable)  # the series exists at 0 from start-up: the first one is an increase
        self._stopping = asyncio.Event()
        self._subscribed = False

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        config = ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            # The server's own limit is a safety net one above ours: we dead-letter on the last attempt ourselves.
            max_deliver=self.max_deliver + 1,
            max_ack_pending=max(1000, self.concurrency * 4),
            deliver_policy=DeliverPolicy.NEW if self.deliver_new_only else DeliverPolicy.ALL,
        )
        sub = await self._subscribe(config)
        if sub is None:
            return
        try:
            await asyncio.gather(*(self._loop(sub) for _ in range(self.concurrency)))
        finally:
            try:
                await sub.unsubscribe()
            except Exception:  # noqa: S110 - the connection may already be draining
                pass

    @property
    def subscribed(self) -> bool:
        return self._subscribed

    async def _subscribe(self, config: ConsumerConfig) -> JetStreamContext.PullSubscription | None:
        """Create or bind the durable consumer; None if asked to stop first. JetStream may not answer yet (a cluster
        still electing its stream leaders, the node we reach restarting): then try again, backing off, instead of
        leaving this consumer dead for the life of the process."""
        for delay in SUBSCRIBE_BACKOFF.delays():
            try:
                sub = await self.bus.js.pull_subscribe(
                    self.bus.subject(self.event), durable=self.durable, stream=self.bus.stream, config=config
                )
            except BadRequestError:
                raise  # a consumer config the server refuses: retrying cannot help
            except NatsError as exc:
                log.warning("consumer not subscribed yet", consumer=self.durable, error=repr(exc), retry_in=delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                    return None
                continue
            self._subscribed = True
            return sub
        raise AssertionError("unreachable: the backoff never ends")

    async def _loop(self, sub: JetStreamContext.PullSubscription) -> None:
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                msgs = await self._fetch(sub, stopping)
                if msgs is None:
                    return
                for msg in msgs:
                    await self.handle(msg)
        finally:
            stopping.cancel()

    async def _fetch(self, sub: JetStreamContext.PullSubscription, stopping: asyncio.Future[Any]) -> list[Msg] | None:
        """The next message (or none in time); None once stopping. An idle consumer asked to stop returns at once
        instead of when its open pull expires: a shutdown (and every test's) does not wait out the pull. After a
        reconnection the pull is opened again at once (the server forgot the old one)."""
        # One message per pull: a pull for N lingers on the server until N arrive or it expires, which
        # would hold a lone event back for the whole timeout. Parallelism comes from `concurrency`.
        fetch = asyncio.ensure_future(sub.fetch(1, timeout=self.pull_seconds))
        try:
            await asyncio.wait((fetch, stopping, self.bus.reconnected()), return_when=asyncio.FIRST_COMPLETED)
        finally:
            fetch.cancel()  # a no-op once it is done
        try:
            return await fetch
        except NatsTimeoutError:
            return []
        except asyncio.CancelledError:
            if fetch.cancelled() and not asyncio.current_task().cancelling():  # type: ignore[union-attr]
                return None if stopping.done() else []  # our own cancellation: stopping, or pulling again
            raise
        except Exception as exc:  # connection hiccup: nats-py reconnects by itself; try again shortly
            if self._stopping.is_set():
                return None
            log.warning("fetch failed", consumer=self.durable, error=repr(exc))
            await asyncio.sleep(0.5)
            return []

    async def handle(self, msg: Msg) -> None:
        """Every log line while handling (the handler's too) carries the consumer, the event and its chain's
        correlation id."""
        # The event's keys are bound once the envelope is parsed; "..." reserves them (unset) so leaving this block
        # resets them too, and the next message of this consumer's task starts clean.
        with bound_contextvars(consumer=self.durable, subject=msg.subject, **dict.fromkeys(_EVENT_KEYS, ...)):
            await self._handle(msg)

    async def _handle(self, msg: Msg) -> None:
        started = time.perf_counter()
        deliveries = msg.metadata.num_delivered
        outcome = "ok"
        envelope: Envelope | None = None
        try:
            envelope = Envelope.model_validate_json(msg.data)
            bind_contextvars(
                event_id=str(envelope.id), event_type=envelope.type, correlation_id=envelope.correlation_id
            )
            event = decode(envelope)
            if not isinstance(event, self.event):
                raise LookupError(
                    f"expected {self.event.TYPE} v{self.event.VERSION}, got {envelope.type} v{envelope.version}"
                )
        except (ValidationError, LookupError, ValueError) as exc:
            outcome = "malformed"
            await self._dead_letter(msg, _describe(exc), deliveries, envelope)
            EVENT_HANDLING_SECONDS.labels(self.durable, outcome).observe(time.perf_counter() - started)
            return
        delivery = Delivery(envelope, msg.subject, deliveries, msg, self.durable)
        try:
            await self._handle_through_outages(event, delivery)
            await msg.ack()
        except PermanentError as exc:
            outcome = "dead-lettered"
            await self._dead_letter(msg, str(exc) or type(exc).__name__, deliveries, envelope)
        except asyncio.CancelledError:
            await _quietly(msg.nak())
            raise
        except Exception as exc:
            if deliveries >= self.max_deliver:
                outcome = "dead-lettered"
                log.error("giving up on event", consumer=self.durable, event_id=str(envelope.id), error=repr(exc))
                await self._dead_letter(msg, f"{type(exc).__name__}: {exc}", deliveries, envelope)
            else:
                outcome = "retry"
                delay = self.backoff[min(deliveries - 1, len(self.backoff) - 1)]
                log.warning(
                    "event handler failed; will retry",
                    consumer=self.durable,
                    event_id=str(envelope.id),
                    attempt=deliveries,
                    retry_in=delay,
                    error=repr(exc),
                )
                await _quietly(msg.nak(delay=delay))
        finally:
            EVENT_HANDLING_SECONDS.labels(self.durable, outcome).observe(time.perf_counter() - started)

    async def _handle_through_outages(self, event: Event, delivery: Delivery) -> None:
        """Run the handler; while it fails because Postgres or NATS is down, hold the message (in progress) and run
        it again as soon as they answer. An outage of our own infrastructure is not the event's fault: it must not
        spend the event's attempts nor push its retry out to the backoff's minutes (a Postgres restart would
        otherwise delay or dead-letter every event handled meanwhile). Past ``OUTAGE_PATIENCE`` seconds it is an
        ordinary failure again."""
        waited, pause = 0.0, OUTAGE_FIRST_PAUSE
        while True:
            try:
                return await self.handler(event, delivery)
            except Exception as exc:
                down = infrastructure_down(exc)
                if down is None or waited >= OUTAGE_PATIENCE or self._stopping.is_set():
                    raise
                if waited == 0:
                    log.warning("event handler waits for an outage", consumer=self.durable, dependency=down)
            await _quietly(delivery.in_progress())  # fails while NATS is the one down; redelivery is then harmless
            await asyncio.sleep(pause)
            waited += pause
            pause = min(pause * 2, OUTAGE_MAX_PAUSE)

    async def _dead_letter(self, msg: Msg, error: str, deliveries: int, envelope: Envelope | None = None) -> None:
        EVENTS_DEAD_LETTERED.labels(self.durable).inc()
        dead = DeadLetteredV1(
            consumer=self.durable,
            original_subject=msg.subject,
            error=error[:4000],
            deliveries=max(deliveries, 1),
            event_id=envelope.id if envelope else None,
            event_type=envelope.type if envelope else None,
            correlation_id=envelope.correlation_id if envelope else None,
            raw=msg.data.decode("utf-8", errors="replace")[:8000],
        )
        # Deterministic id: dead-lettering the same delivery twice (a crash in between) publishes once.
        key = f"{self.durable}:{msg.metadata.stream}:{msg.metadata.sequence.stream}"
        await self.bus.publish(
            dead,
            correlation_id=envelope.correlation_id if envelope else "unknown",
            event_id=uuid.uuid5(uuid.NAMESPACE_URL, key),
        )
        log.error("event dead-lettered", consumer=self.durable, subject=msg.subject, error=error[:500])
        await msg.term()


_EVENT_KEYS = ("event_id", "event_type", "correlation_id")


def _describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        parts = [f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors()[:20]]
        return "invalid message: " + "; ".join(parts)
    return f"invalid message: {exc}"


async def _quietly(aw: Awaitable[None]) -> None:
    try:
        await aw
    except Exception:  # noqa: S110 - best effort; JetStream redelivers after ack_wait anyway
        pass
