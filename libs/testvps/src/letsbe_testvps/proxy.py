"""A forward HTTP proxy on the host end of a test VPS's link that only reaches the Debian mirror hosts.

The VPS has no default route and no resolver; apt inside uses this (``Acquire::http::Proxy``). Anything else — any
other host, CONNECT, a non-HTTP port — gets 403, so a step that tries to reach the internet fails visibly.

    python -m letsbe_testvps.proxy LISTEN_IP PORT HOST [HOST ...]
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from urllib.parse import urlsplit

HEADER_LIMIT = 64 * 1024


async def _refuse(writer: asyncio.StreamWriter, status: str, why: str) -> None:
    body = f"letsbe-testvps proxy: {why}\n".encode()
    head = f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
    writer.write(head.encode() + b"\r\n" + body)
    with contextlib.suppress(OSError):
        await writer.drain()


async def _one_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, allowed: set[str]) -> bool:
    """Forward one request; True if the client connection can carry another one."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
        return False
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ")
    except ValueError:
        await _refuse(writer, "400 Bad Request", "malformed request line")
        return False
    url = urlsplit(target)
    if method == "CONNECT" or url.scheme != "http" or url.hostname not in allowed or url.port not in (None, 80):
        await _refuse(
            writer, "403 Forbidden", f"{method} {target} is not a Debian mirror URL ({', '.join(sorted(allowed))})"
        )
        return False
    headers = [
        h for h in lines[1:] if h and not h.lower().startswith(("connection:", "proxy-connection:", "keep-alive:"))
    ]
    length = next((int(h.split(":", 1)[1]) for h in headers if h.lower().startswith("content-length:")), 0)
    body = await reader.readexactly(length) if length else b""
    path = url.path or "/"
    if url.query:
        path += "?" + url.query
    try:
        up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(url.hostname, 80), 20)
    except (OSError, TimeoutError) as exc:
        await _refuse(writer, "502 Bad Gateway", f"cannot reach {url.hostname}: {exc}")
        return False
    try:
        request = "\r\n".join([f"{method} {path} {version}", *headers, "Connection: close", "", ""])
        up_writer.write(request.encode("latin-1") + body)
        await up_writer.drain()
        # Upstream closes after its response (Connection: close): copy until EOF. The client may keep its
        # connection only if the response framed itself (Content-Length or chunked) and was not a close-delimited one.
        resp_head = await up_reader.readuntil(b"\r\n\r\n")
        lowered = resp_head.lower()
        framed = b"\r\ncontent-length:" in lowered or b"chunked" in lowered or method == "HEAD"
        status_line, _, rest = resp_head.partition(b"\r\n")
        kept = [h for h in rest.split(b"\r\n") if h and not h.lower().startswith((b"connection:", b"keep-alive:"))]
        connection = b"Connection: " + (b"keep-alive" if framed else b"close")
        writer.write(b"\r\n".join([status_line, *kept, connection, b"", b""]))
        while chunk := await up_reader.read(65536):
            writer.write(chunk)
            await writer.drain()
        return framed
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
        return False
    finally:
        up_writer.close()


async def _client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, allowed: set[str]) -> None:
    try:
        while await _one_request(reader, writer, allowed):
            pass
    finally:
        writer.close()


async def serve(host: str, port: int, allowed: set[str]) -> None:
    server = await asyncio.start_server(lambda r, w: _client(r, w, allowed), host, port, limit=HEADER_LIMIT)
    async with server:
        await server.serve_forever()


def main() -> None:
    host, port, *allowed = sys.argv[1:]
    asyncio.run(serve(host, int(port), set(allowed)))


if __name__ == "__main__":
    main()
