"""Run a service's app with uvicorn: SIGTERM drains consumers and finishes in-flight work (lifespan shutdown).

When shutdown begins, before uvicorn waits (up to the grace period) for the open requests to end, the app's
``Runtime.stopping`` is set: long-lived requests (the agents' command long-polls) answer then, instead of holding the
shutdown until the grace period runs out and is cut short.

The HTTP parser is h11 with a cap on the request head (``max_header_bytes``): a larger request line plus headers is
answered 431 and the connection closed, instead of being buffered whatever its size.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from letsbe_platform.errors import PROBLEM_BASE, PROBLEM_JSON

if TYPE_CHECKING:  # only annotations: the tenant agents' settings are no pydantic model
    from letsbe_platform.service_config import ServiceConfig


class _Connection(h11.Connection):
    """Remembers the protocol error h11 raised, so the answer can carry its status hint (431 for a too-long head)."""

    last_error: h11.RemoteProtocolError | None = None

    def next_event(self):  # type: ignore[no-untyped-def]
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.last_error = exc
            raise


class H11WithHeaderLimit(H11Protocol):
    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.conn = _Connection(h11.SERVER, self.config.h11_max_incomplete_event_size)

    def send_400_response(self, msg: str) -> None:
        error = getattr(self.conn, "last_error", None)
        if error is None or error.error_status_hint != 431:
            super().send_400_response(msg)
            return
        body = json.dumps(
            {
                "type": PROBLEM_BASE + "headers-too-large",
                "title": "Request header fields too large",
                "status": 431,
                "detail": f"Request line and headers are limited to {self.config.h11_max_incomplete_event_size} bytes.",
            }
        ).encode()
        headers = [(b"content-type", PROBLEM_JSON.encode()), (b"connection", b"close")]
        for event in (
            h11.Response(status_code=431, headers=headers, reason=b"Request Header Fields Too Large"),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event))
        self.transport.close()


def uvicorn_config(
    app_factory: Callable[[], ASGIApp], settings: ServiceConfig, *, lean: bool = False,
    ws_max_bytes: int | None = None,
) -> uvicorn.Config:
    """``lean``: the tenant agents, which live under a small memory limit, run on the standard asyncio loop
    (uvloop costs about 2.5 MB resident, and their request rates do not need it). ``ws_max_bytes``: the service
    serves WebSocket routes (the hub's chat relay), with websockets' Sans-I/O protocol; a larger message is refused
    with close code 1009 before it is held. Without it uvicorn loads no WebSocket implementation (about 2 MB)."""
    return uvicorn.Config(
        app_factory,
        factory=True,
        host=settings.host,
        port=settings.port,
        log_config=None,  # our structlog setup owns logging
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        lifespan="on",
        http=H11WithHeaderLimit,
        h11_max_incomplete_event_size=settings.max_header_bytes,
        ws="websockets-sansio" if ws_max_bytes else "none",
        ws_max_size=ws_max_bytes or 16 * 1024 * 1024,
        loop="asyncio" if lean else "auto",
        # The app sees the TCP peer as it is: uvicorn would otherwise take the client address and scheme from
        # X-Forwarded-* of any loopback peer. Which proxy to believe is the service's own setting (the hub's
        # LETSBE_HUB_TRUSTED_PROXIES, letsbe_hub.web.limits), not a second rule here.
        proxy_headers=False,
    )


class Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, apps: list[ASGIApp]):
        super().__init__(config)
        self.apps = apps

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for app in self.apps:
            rt = getattr(app.state, "runtime", None)
            if rt is not None:
                rt.stopping.set()
        await super().shutdown(sockets)


def make_server(
    app_factory: Callable[[], ASGIApp], settings: ServiceConfig, *, lean: bool = False, ws_max_bytes: int | None = None
) -> Server:
    apps: list[ASGIApp] = []

    def factory() -> ASGIApp:
        app = app_factory()
        apps.append(app)
        return app

    return Server(uvicorn_config(factory, settings, lean=lean, ws_max_bytes=ws_max_bytes), apps)


def serve(
    app_factory: Callable[[], ASGIApp], settings: ServiceConfig, *, lean: bool = False, ws_max_bytes: int | None = None
) -> None:
    make_server(app_factory, settings, lean=lean, ws_max_bytes=ws_max_bytes).run()
