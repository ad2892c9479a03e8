"""One relay WebSocket, either end (a customer's app or the tenant's agent): the same frames, the same rules.

    hello → ready, then any number of: message → accepted (stored; its id), and message ← (relayed to it) → ack

Inbound: each ``message`` frame is stored in JetStream before ``accepted`` answers it (so an accepted message is
never lost), under the sender's own id (so one resent after a reconnect is stored once). Outbound: the other end's
messages after the ``hello``'s ``after`` id, in id order, each at most once per connection.

Flow control: at most ``relay_max_unacked`` messages are queued or sent but not acknowledged. When the window is
full the hub stops reading the conversation from JetStream (it unsubscribes, and follows again from the last
queued id once acks make room), so a reader catching up on a long backlog gets it all, window by window, and
nothing is buffered without bound. A reader whose window stays full for ``relay_slow_consumer_seconds`` is a slow
consumer: closed with 4408 (it resumes from its last acknowledged id). A frame that is not valid JSON of a known
shape gets an ``error`` frame and close 4400, and nothing of it is relayed. Close codes: docs/api.md, "Chat relay".
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from datetime import UTC, datetime

from fastapi import WebSocket, WebSocketDisconnect
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from prometheus_client import Counter, Gauge
from pydantic import ValidationError
from starlette.websockets import WebSocketState

from letsbe_hub.relay.auth import RelayPeer
from letsbe_hub.relay.broker import Direction, RelayBroker
from letsbe_hub.relay.schemas import CLIENT_FRAME, Ack, Hello, RelayedMessage, Send
from letsbe_platform.logging import get_logger

log = get_logger(__name__)

OPEN = Gauge("hub_relay_connections_open", "Relay WebSockets open in this process", ["side"])
RELAYED = Counter("hub_relay_messages_total", "Messages stored by the relay, by direction", ["direction"])
CLOSED = Counter("hub_relay_closes_total", "Relay WebSockets closed by the hub, by close code", ["code"])

# Close codes (besides the protocol's own 1009 for a message over relay_max_message_bytes).
GOING_AWAY = 1001  # the hub is shutting down: reconnect (to another replica) and resume
UNSUPPORTED = 1003  # a binary message: frames are JSON text
INTERNAL = 1011  # the hub could not store or read messages (NATS): reconnect and resume
INVALID_FRAME = 4400
SLOW_CONSUMER = 4408


class RelayConnection:
    def __init__(self, websocket: WebSocket, broker: RelayBroker, peer: RelayPeer, *, inbound: Direction,
                 outbound: Direction):
        self.ws = websocket
        self.broker = broker
        self.peer = peer
        self.inbound, self.outbound = inbound, outbound
        self.settings = broker.settings
        self.side = "agent" if inbound == "to-customer" else "customer"
        self.log = log.bind(tenant_id=str(peer.tenant_id), peer=peer.who)
        # Together with ``unacked`` at most relay_max_unacked messages (_deliver drops and pauses beyond that).
        self.queue: asyncio.Queue[tuple[int, dict]] = asyncio.Queue()
        self.unacked: collections.deque[int] = collections.deque()
        self.last_queued = 0
        self.sub: Subscription | None = None
        self.paused = asyncio.Event()  # set while the window is full and the subscription is stopped
        self.acked = asyncio.Event()  # set by each ack that made room
        self.done = asyncio.Event()
        self.close_code = 1000
        self.close_reason = ""
        self._send_lock = asyncio.Lock()

    def close(self, code: int, reason: str) -> None:
        if not self.done.is_set():
            self.close_code, self.close_reason = code, reason
            self.done.set()

    async def _send(self, frame: dict) -> None:
        async with self._send_lock:
            await self.ws.send_json(frame)

    async def run(self, stopping: asyncio.Event) -> None:
        await self.ws.accept()
        OPEN.labels(self.side).inc()
        tasks: list[asyncio.Task[None]] = []
        try:
            hello = await self._hello()
            if hello is not None:
                self.last_queued = hello.after or 0
                self.sub = await self.broker.follow(self.peer.tenant_id, self.outbound, hello.after, self._deliver)
                await self._send({"type": "ready", "tenant_id": str(self.peer.tenant_id), "after": hello.after,
                                  "max_message_bytes": self.settings.relay_max_message_bytes,
                                  "max_unacked": self.settings.relay_max_unacked})
                tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._write()),
                         asyncio.create_task(self._flow()),
                         asyncio.create_task(self._on(stopping, GOING_AWAY, "the hub is shutting down"))]
                await self.done.wait()
        except WebSocketDisconnect:
            self.close(1000, "")
        except (NatsError, TimeoutError) as exc:
            self.log.warning("relay could not reach NATS", error=repr(exc))
            self.close(INTERNAL, "messages are unavailable, reconnect")
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._unsubscribe()
            OPEN.labels(self.side).dec()
            await self._close_socket()

    async def _on(self, event: asyncio.Event, code: int, reason: str) -> None:
        await event.wait()
        self.close(code, reason)

    async def _close_socket(self) -> None:
        if self.ws.client_state is not WebSocketState.CONNECTED:
            return
        if self.close_code != 1000:
            CLOSED.labels(str(self.close_code)).inc()
            self.log.info("relay connection closed by the hub", code=self.close_code, reason=self.close_reason)
        with contextlib.suppress(Exception):
            # A peer that reads nothing never answers the close: do not wait on it for long.
            await asyncio.wait_for(self.ws.close(self.close_code, self.close_reason[:120]), timeout=5)

    # --- inbound -----------------------------------------------------------------------------------------------

    async def _frame(self) -> Hello | Send | Ack | None:
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        text = message.get("text")
        if text is None:
            self.close(UNSUPPORTED, "frames are JSON text messages")
            return None
        try:
            return CLIENT_FRAME.validate_json(text)
        except ValidationError as exc:
            detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'frame'}: {e['msg']}" for e in exc.errors()[:5])
            await self._error("invalid-frame", detail[:500])
            self.close(INVALID_FRAME, "invalid frame")
            return None

    async def _error(self, code: str, detail: str) -> None:
        with contextlib.suppress(Exception):
            await self._send({"type": "error", "code": code, "detail": detail})

    async def _hello(self) -> Hello | None:
        try:
            frame = await asyncio.wait_for(self._frame(), self.settings.relay_hello_timeout_seconds)
        except TimeoutError:
            await self._error("hello-expected", "the first frame must be a hello, in time")
            self.close(INVALID_FRAME, "no hello")
            return None
        if frame is not None and not isinstance(frame, Hello):
            await self._error("hello-expected", "the first frame must be a hello")
            self.close(INVALID_FRAME, "no hello")
            return None
        return frame

    async def _read(self) -> None:
        try:
            while not self.done.is_set():
                frame = await self._frame()
                if frame is None:
                    return
                if isinstance(frame, Send):
                    await self._store(frame)
                elif isinstance(frame, Ack):
                    before = len(self.unacked)
                    while self.unacked and self.unacked[0] <= frame.id:
                        self.unacked.popleft()
                    if len(self.unacked) < before:
                        self.acked.set()
                else:
                    await self._error("invalid-frame", "hello is only the first frame")
                    self.close(INVALID_FRAME, "second hello")
                    return
        except (NatsError, TimeoutError) as exc:  # before OSError, which TimeoutError is
            self.log.warning("relay could not store a message", error=repr(exc))
            self.close(INTERNAL, "messages are unavailable, reconnect")
        except (WebSocketDisconnect, OSError):  # OSError: uvicorn's ClientDisconnected on a send
            self.close(1000, "")

    async def _store(self, frame: Send) -> None:
        data = RelayedMessage(client_id=frame.id, text=frame.text, reply_to=frame.reply_to,
                              sent_at=datetime.now(UTC)).model_dump_json().encode()
        seq = await self.broker.publish(self.peer.tenant_id, self.inbound, frame.id, data)
        RELAYED.labels(self.inbound).inc()
        await self._send({"type": "accepted", "id": frame.id, "seq": seq})

    # --- outbound ----------------------------------------------------------------------------------------------

    def _outstanding(self) -> int:
        return self.queue.qsize() + len(self.unacked)

    async def _deliver(self, msg: Msg) -> None:
        seq = msg.metadata.sequence.stream
        if seq <= self.last_queued or self.done.is_set() or self.paused.is_set():
            return  # already queued (an ordered consumer's reset may go back), or read again after the pause
        if self._outstanding() >= self.settings.relay_max_unacked:
            self.paused.set()  # _flow stops the subscription; this message is read again when it follows anew
            return
        try:
            stored = RelayedMessage.model_validate_json(msg.data)
        except ValidationError:
            self.log.error("unreadable relay message skipped", seq=seq)
            return
        self.last_queued = seq
        frame = {"type": "message", "id": seq, "text": stored.text, "reply_to": stored.reply_to,
                 "sent_at": stored.sent_at.isoformat()}
        self.queue.put_nowait((seq, frame))

    async def _unsubscribe(self) -> None:
        sub, self.sub = self.sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _flow(self) -> None:
        """Stops reading while the window is full; follows again from the last queued id when acks make room, or
        closes the connection as a slow consumer when none come in time."""
        limit = self.settings.relay_max_unacked
        while True:
            await self.paused.wait()
            await self._unsubscribe()
            while self._outstanding() >= limit:
                self.acked.clear()
                try:
                    await asyncio.wait_for(self.acked.wait(), self.settings.relay_slow_consumer_seconds)
                except TimeoutError:
                    self.close(SLOW_CONSUMER, f"{limit} messages not acknowledged in time")
                    return
            self.paused.clear()
            try:
                self.sub = await self.broker.follow(self.peer.tenant_id, self.outbound, self.last_queued,
                                                    self._deliver)
            except (NatsError, TimeoutError) as exc:
                self.log.warning("relay could not follow the conversation again", error=repr(exc))
                self.close(INTERNAL, "messages are unavailable, reconnect")
                return

    async def _write(self) -> None:
        try:
            while True:
                seq, frame = await self.queue.get()
                self.unacked.append(seq)
                await self._send(frame)
        except (WebSocketDisconnect, OSError, RuntimeError):  # the peer is gone
            self.close(1000, "")
