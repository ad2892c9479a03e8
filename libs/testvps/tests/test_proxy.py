"""The test VPS's apt proxy forwards to the Debian mirror only (apt through it is exercised by tests/vps)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from letsbe_platform.testing import eventually
from letsbe_testvps.proxy import serve


@pytest.mark.parametrize(
    "request_line",
    [
        "GET http://example.com/ HTTP/1.1",  # another host
        "GET http://deb.debian.org:8080/debian/ HTTP/1.1",  # the mirror's host, another port
        "CONNECT deb.debian.org:443 HTTP/1.1",  # a tunnel to anywhere
        "GET https://deb.debian.org/debian/ HTTP/1.1",
    ],
)
async def test_anything_but_the_mirror_is_refused_without_a_connection(request_line: str, unused_tcp_port: int) -> None:
    server = asyncio.create_task(serve("127.0.0.1", unused_tcp_port, {"deb.debian.org"}))
    try:

        async def connected() -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
            try:
                return await asyncio.open_connection("127.0.0.1", unused_tcp_port)
            except OSError:
                return None

        reader, writer = await eventually(connected, "the proxy listens", timeout=20, every=0.02)
        writer.write(f"{request_line}\r\nHost: x\r\n\r\n".encode())
        response = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert response.startswith(b"HTTP/1.1 403 Forbidden\r\n")
        assert b"is not a Debian mirror URL (deb.debian.org)" in response
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server
