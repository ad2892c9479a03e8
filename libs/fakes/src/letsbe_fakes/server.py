"""Serve an ASGI app on a free loopback port from a background thread (for fakes and receivers in tests)."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from letsbe_platform.testing import free_port


class LoopbackServer:
    """``with LoopbackServer(app) as srv: srv.url`` — a real HTTP server on 127.0.0.1, stopped on exit.

    Works from sync and async tests alike (the server runs its own event loop in a thread).
    """

    def __init__(self, app: Any, *, port: int | None = None, host: str = "127.0.0.1"):
        self.app = app
        self.host = host
        self.port = port or free_port(host)
        self._server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=self.port, log_level="warning", lifespan="off", access_log=False)
        )
        self._thread = threading.Thread(target=self._server.run, name=f"fake-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> LoopbackServer:
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("loopback server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
