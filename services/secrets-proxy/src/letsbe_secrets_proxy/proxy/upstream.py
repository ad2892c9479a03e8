"""The proxy's HTTP/1.1 client for the LLM provider: h11 over asyncio streams, kept-alive connections reused.

httpx (and the httpcore and anyio layers under it) cost about 0.6 ms of CPU per 64 KB call on this path, as much as
redacting the body (docs/benchmarks.md, Secrets Proxy). The proxy needs a small part of a client: POST a body it
already holds, read the answer as it arrives, never follow a redirect, keep no cookies. It asks for the answer
uncompressed (``accept-encoding: identity``) and refuses a compressed one: redaction has to read the text.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import h11

READ_SIZE = 64 * 1024
SEND_PIECE = 64 * 1024
# What breaks a call: the network, a timeout, TLS, or an answer that is not HTTP/1.1.
_BROKEN = (OSError, TimeoutError, h11.ProtocolError)


class UpstreamError(Exception):
    """The provider could not be reached or its answer broke off (the proxy answers 502)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.h11 = h11.Connection(h11.CLIENT)
        self.received = False  # any byte of the current answer

    def usable(self) -> bool:
        """Idle and not closed by the server meanwhile (its FIN arrives as end of file)."""
        return not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()


class UpstreamResponse:
    """An answer whose body has not been read yet: ``aiter_bytes`` reads it, ``aclose`` must always follow."""

    def __init__(self, client: UpstreamClient, key: tuple[str, str, int], conn: _Connection, head: h11.Response):
        self.status_code = head.status_code
        # Lower-case names; a repeated header's values joined as one (what httpx's headers.get gives).
        self.headers: dict[str, str] = {}
        for name, value in head.headers:
            k, v = name.decode("latin-1"), value.decode("latin-1")
            self.headers[k] = f"{self.headers[k]}, {v}" if k in self.headers else v
        self._client, self._key, self._conn = client, key, conn
        self._done = False

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None:
            return
        while True:
            try:
                event = await self._client._next_event(conn)
            except _BROKEN as exc:
                raise UpstreamError(type(exc).__name__) from exc
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._done = True
                return

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._client._release(self._key, conn, reuse=self._done)


class UpstreamClient:
    def __init__(self, *, timeout: float, connect_timeout: float = 10.0, max_connections: int = 100,
                 max_idle: int = 20, ssl_context: ssl.SSLContext | None = None):
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self.max_idle = max_idle
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._slots = asyncio.Semaphore(max_connections)

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> UpstreamResponse:
        """Send ``body`` and wait for the answer's status and headers. A kept-alive connection the server closed
        meanwhile (before answering anything) is replaced once: the request never reached it."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UpstreamError(f"unsupported URL {parts.scheme}://")
        key = (parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = [("host", parts.netloc.rpartition("@")[2]), *headers.items(),
                ("content-length", str(len(body))), ("accept-encoding", "identity")]
        try:
            async with asyncio.timeout(self.timeout):
                await self._slots.acquire()
        except TimeoutError as exc:
            raise UpstreamError("PoolTimeout") from exc
        try:
            while True:
                conn, reused = await self._connection(key)
                try:
                    answer = await self._exchange(conn, target, head, body)
                except _BROKEN as exc:
                    conn.close()
                    if reused and not conn.received:
                        continue
                    raise UpstreamError(type(exc).__name__) from exc
                response = UpstreamResponse(self, key, conn, answer)
                if response.headers.get("content-encoding", "identity").lower() != "identity":
                    conn.close()
                    raise UpstreamError("compressed answer")
                return response
        except BaseException:
            self._slots.release()
            raise

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    async def _connection(self, key: tuple[str, str, int]) -> tuple[_Connection, bool]:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.usable():
                return conn, True
            conn.close()
        scheme, host, port = key
        try:
            async with asyncio.timeout(self.connect_timeout):
                tls = (self._ssl or True) if scheme == "https" else None
                reader, writer = await asyncio.open_connection(host, port, ssl=tls, limit=READ_SIZE)
        except _BROKEN as exc:
            raise UpstreamError(type(exc).__name__) from exc
        return _Connection(reader, writer), False

    async def _exchange(self, conn: _Connection, target: str, head: list[tuple[str, str]],
                        body: bytes) -> h11.Response:
        conn.received = False
        writer = conn.writer
        writer.write(conn.h11.send(h11.Request(method="POST", target=target, headers=head)))
        # In pieces, each drained before the next: the transport buffers a piece, not a second copy of the body.
        for i in range(0, len(body), SEND_PIECE):
            for chunk in conn.h11.send_with_data_passthrough(h11.Data(data=body[i:i + SEND_PIECE])):
                writer.write(chunk)
            async with asyncio.timeout(self.timeout):
                await writer.drain()
        writer.write(conn.h11.send(h11.EndOfMessage()))
        while True:
            event = await self._next_event(conn)
            if isinstance(event, h11.Response):
                return event
            # InformationalResponse (100 Continue …): the answer follows

    async def _next_event(self, conn: _Connection) -> h11.Event | type[h11.PAUSED]:
        while True:
            event = conn.h11.next_event()
            if event is not h11.NEED_DATA:
                if isinstance(event, h11.ConnectionClosed):
                    raise h11.RemoteProtocolError("the server closed the connection")
                return event
            async with asyncio.timeout(self.timeout):
                data = await conn.reader.read(READ_SIZE)
            conn.received = conn.received or bool(data)
            conn.h11.receive_data(data)  # b"": end of file, which h11 turns into an error mid-answer

    def _release(self, key: tuple[str, str, int], conn: _Connection, *, reuse: bool) -> None:
        self._slots.release()
        idle = self._idle.setdefault(key, [])
        if reuse and conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE \
                and len(idle) < self.max_idle and conn.usable():
            conn.h11.start_next_cycle()
            idle.append(conn)
        else:
            conn.close()
