"""The proxy's upstream client against a loopback HTTP/1.1 server whose connections the test controls."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import AsyncIterator

import pytest

from letsbe_fakes.tls_endpoint import self_signed
from letsbe_secrets_proxy.proxy.upstream import UpstreamClient, UpstreamError


class Server:
    """Answers each request with ``answer`` (the raw bytes after the status line's headers are built here)."""

    def __init__(self) -> None:
        self.connections = 0
        self.bodies: list[bytes] = []
        self.extra_headers = b""
        self.close_after_answer = False
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                self.bodies.append(await reader.readexactly(length))
                body = b'{"ok": true}'
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n" + self.extra_headers
                             + b"content-length: %d\r\n\r\n" % len(body) + body)
                await writer.drain()
                if self.close_after_answer:
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[tuple[Server, str]]:
    s = Server()
    srv = await asyncio.start_server(s.handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    async with srv:
        yield s, f"http://127.0.0.1:{port}/v1/chat/completions"


async def _call(client: UpstreamClient, url: str, body: bytes = b'{"a": 1}') -> bytes:
    resp = await client.post(url, {"content-type": "application/json"}, body)
    try:
        assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
        return b"".join([c async for c in resp.aiter_bytes()])
    finally:
        await resp.aclose()


async def test_calls_reuse_one_kept_alive_connection(server):
    s, url = server
    client = UpstreamClient(timeout=5)
    for n in range(3):
        assert await _call(client, url, b'{"n": %d}' % n) == b'{"ok": true}'
    assert s.connections == 1 and s.bodies == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
    await client.aclose()


async def test_a_connection_the_server_closed_while_idle_is_replaced(server):
    s, url = server
    client = UpstreamClient(timeout=5)
    await _call(client, url)
    for w in s.writers:  # the server's keep-alive timeout: it closes the idle connection
        w.close()
    await asyncio.sleep(0)  # not waiting for the FIN to arrive: the retry covers a close racing the request
    assert await _call(client, url) == b'{"ok": true}'
    assert s.connections == 2 and len(s.bodies) == 2
    await client.aclose()


async def test_a_connection_the_server_closes_after_answering_is_not_reused(server):
    s, url = server
    s.close_after_answer = True
    client = UpstreamClient(timeout=5)
    await _call(client, url)
    await _call(client, url)
    assert s.connections == 2
    await client.aclose()


async def test_a_compressed_answer_is_refused(server):
    s, url = server
    s.extra_headers = b"content-encoding: gzip\r\n"
    client = UpstreamClient(timeout=5)
    with pytest.raises(UpstreamError, match="compressed"):
        await client.post(url, {}, b"{}")
    await client.aclose()


async def test_an_answer_that_never_comes_times_out():
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 20)
        await reader.read()  # silent until the client gives up and closes (EOF): no answer ever comes

    srv = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    async with srv:
        client = UpstreamClient(timeout=0.2)
        with pytest.raises(UpstreamError, match="TimeoutError"):
            await client.post(f"http://127.0.0.1:{port}/v1/x", {}, b"{}")
        await client.aclose()


async def test_https_is_verified_against_the_trusted_certificates(tmp_path):
    cert, key = self_signed("localhost", dt.datetime.now(dt.UTC) + dt.timedelta(days=1), also=("127.0.0.1",))
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    s = Server()
    srv = await asyncio.start_server(s.handle, "127.0.0.1", 0, ssl=served)
    url = f"https://localhost:{srv.sockets[0].getsockname()[1]}/v1/chat/completions"
    async with srv:
        trusting = ssl.create_default_context(cafile=tmp_path / "cert.pem")
        client = UpstreamClient(timeout=5, ssl_context=trusting)
        assert await _call(client, url) == b'{"ok": true}'
        await client.aclose()
        # The system's trust store does not know this certificate: refused, nothing sent.
        client = UpstreamClient(timeout=5, ssl_context=ssl.create_default_context())
        with pytest.raises(UpstreamError, match="SSLCertVerificationError"):
            await client.post(url, {}, b"{}")
        await client.aclose()
    assert len(s.bodies) == 1
