"""The tenant end of the chat relay: the Safety Wrapper keeps one outbound WebSocket to the hub (tenants are not
reachable inbound), hands each customer message to the AI agent's chat API (OpenClaw's gateway,
``/v1/chat/completions``) and sends the answer back. Protocol: the hub's docs/api.md, "Chat relay".

Each customer message is handled once, in order: its answer goes out under the id ``answer-<message id>`` (so an
answer sent again after a reconnect is stored once by the hub), and only when the hub has accepted the answer is
the message acknowledged and its id written to ``relay.json`` in the state directory. After a restart or a
reconnect the hub is asked for the messages after that id. The connection uses the agent's own API key (the one it
heartbeats with); it reconnects with exponential backoff and full jitter.
"""

from __future__ import annotations

import asyncio
import collections
import json
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from letsbe_agent.files import read_json, write_json
from letsbe_agent.runtime import AgentRuntime
from letsbe_contracts.protocol import openclaw_chat_request
from letsbe_platform.logging import get_logger
from letsbe_platform.tls import client_context
from letsbe_platform.waiting import FullJitter
from letsbe_safety_wrapper.config import SafetyWrapperSettings

log = get_logger(__name__)

RELAY_PATH = "/api/v1/tenant/relay/ws"
UNAVAILABLE = "Your assistant cannot answer right now. Please try again in a moment."


class ChatRelay:
    def __init__(self, settings: SafetyWrapperSettings, agent: AgentRuntime):
        assert settings.hub_url and settings.chat_url and settings.state_dir
        self.settings = settings
        self.agent = agent
        base = settings.hub_url.rstrip("/")
        self.url = (
            "wss://" + base[len("https://") :]
            if base.startswith("https://")
            else "ws://" + base.removeprefix("http://")
        ) + RELAY_PATH
        self.state_path: Path = settings.state_dir / "relay.json"
        # Without a saved position (the first start): everything the hub holds for this tenant, so a message sent
        # before the relay first connected is answered too. (A lost state directory means the hub's retained
        # messages, relay_retention_seconds, are answered again.)
        self.after: int = int((read_json(self.state_path) or {}).get("after", 0))
        self.max_bytes = 64 * 1024  # until the hub's ready frame says
        self._stopping = asyncio.Event()
        token = settings.chat_token.get_secret_value() if settings.chat_token else None
        self.chat = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.chat_timeout_seconds, connect=10),
            verify=client_context(),
            headers={"Authorization": f"Bearer {token}"} if token else {},
        )

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        backoff = FullJitter(self.settings.backoff_base_seconds, self.settings.backoff_max_seconds)
        try:
            while not self._stopping.is_set():
                credential = self.agent.credential
                if credential is None:  # not registered (yet, or again): the agent runtime sees to that
                    await self._pause(0.5)
                    continue
                try:
                    async with connect(
                        self.url,
                        additional_headers={"Authorization": f"Bearer {credential.api_key}"},
                        ssl=client_context() if self.url.startswith("wss://") else None,
                        max_size=1024 * 1024,
                        open_timeout=self.settings.hub_timeout_seconds,
                    ) as ws:
                        await self._session(ws, backoff)
                except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake) as exc:
                    status = exc.response.status_code if isinstance(exc, InvalidStatus) else None
                    delay = backoff.next_delay()
                    log.info(
                        "chat relay disconnected; reconnecting",
                        error=repr(exc)[:200],
                        status=status,
                        retry_in=round(delay, 2),
                    )
                    await self._pause(delay)
        finally:
            await self.chat.aclose()

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass

    async def _session(self, ws: ClientConnection, backoff: FullJitter) -> None:
        await ws.send(json.dumps({"type": "hello", "after": self.after}))
        ready = json.loads(await ws.recv())
        if ready.get("type") != "ready":
            raise ConnectionClosed(None, None)
        self.max_bytes = int(ready.get("max_message_bytes", self.max_bytes))
        backoff.reset()
        log.info("chat relay connected", after=self.after)
        # Customer messages that came in while an answer waited for its acceptance (at most the hub's window).
        waiting: collections.deque[dict[str, Any]] = collections.deque()
        stop = asyncio.create_task(self._stopping.wait())
        try:
            while True:
                if waiting:
                    frame = waiting.popleft()
                else:
                    recv = asyncio.create_task(ws.recv())
                    done, _ = await asyncio.wait([recv, stop], return_when=asyncio.FIRST_COMPLETED)
                    if stop in done:
                        recv.cancel()
                        return
                    frame = json.loads(recv.result())
                if frame.get("type") == "message":
                    await self._answer(ws, frame, waiting)
                elif frame.get("type") == "error":
                    log.warning("the hub refused a relay frame", code=frame.get("code"), detail=frame.get("detail"))
        finally:
            stop.cancel()

    async def _answer(
        self, ws: ClientConnection, message: dict[str, Any], waiting: collections.deque[dict[str, Any]]
    ) -> None:
        seq = int(message["id"])
        if seq <= self.after:
            return
        text = await self._ask(str(message.get("text", "")))
        answer_id = f"answer-{seq}"
        await ws.send(json.dumps({"type": "message", "id": answer_id, "text": self._fit(text), "reply_to": seq}))
        while True:  # the hub answers each message in order: wait for this one's acceptance
            frame = json.loads(await ws.recv())
            if frame.get("type") == "accepted" and frame.get("id") == answer_id:
                break
            if frame.get("type") == "message":
                waiting.append(frame)
            elif frame.get("type") == "error":
                log.warning("the hub refused an answer", code=frame.get("code"), detail=frame.get("detail"))
        self.after = seq
        write_json(self.state_path, {"after": seq})
        await ws.send(json.dumps({"type": "ack", "id": seq}))
        log.info("customer message answered", id=seq)

    async def _ask(self, text: str) -> str:
        """The AI agent's answer to one customer message (an OpenAI-style chat completion)."""
        try:
            r = await self.chat.post(
                self.settings.chat_url or "", json=openclaw_chat_request(text, self.settings.chat_model)
            )
            r.raise_for_status()
            return str(r.json()["choices"][0]["message"]["content"] or "")
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
            log.error("the AI agent did not answer a customer message", error=repr(exc)[:300])
            return UNAVAILABLE

    def _fit(self, text: str) -> str:
        """Within the hub's message limit (the frame's JSON around it included)."""
        limit = self.max_bytes - 512
        data = text.encode()
        if len(json.dumps(text).encode()) <= limit:
            return text
        while len(json.dumps(data.decode("utf-8", "ignore")).encode()) > limit:
            data = data[: int(len(data) * 0.9)]
        return data.decode("utf-8", "ignore") + " …"
