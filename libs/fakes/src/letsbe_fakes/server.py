"""Serve an ASGI app on a free loopback port from a background thread (for fakes and receivers in tests)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from typing import Any

import uvicorn

from letsbe_platform.testing import eventually_blocking


class QuickServer(uvicorn.Server):
    """uvicorn's server without its fixed waits: uvicorn looks at ``should_exit`` every 0.1 s and then gives open
    connections a flat 0.1 s, so every fake stopped after a test cost about 0.2 s of nothing. Call ``stop()``
    (from any thread) instead of setting ``should_exit``."""

    _wake: asyncio.Event | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        while not await self.on_tick(0):  # tick 0: refresh the Date header; True once should_exit is set
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1)

    def start_in_thread(self, name: str, **run: Any) -> threading.Thread:
        """Serve from a daemon thread of its own (``run``: uvicorn's ``run`` arguments, e.g. bound ``sockets``);
        returns once the server is started."""
        self.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        thread = threading.Thread(target=self.run, kwargs=run, name=name, daemon=True)
        thread.start()

        def started() -> bool:
            if not thread.is_alive():
                raise RuntimeError(f"{name} did not start")
            return self.started

        eventually_blocking(started, f"{name} started", timeout=10, every=0.01)
        return thread

    def stop(self) -> None:
        self.should_exit = True
        if self._loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed: nothing to wake
                self._loop.call_soon_threadsafe(self._wake.set)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        # In-flight responses finish (bounded, as a graceful shutdown), polled finely instead of in 0.1 s steps.
        deadline = time.monotonic() + (self.config.timeout_graceful_shutdown or 10)
        while (self.server_state.connections or self.server_state.tasks) and time.monotonic() < deadline:  # noqa: ASYNC110 - uvicorn signals neither
            await asyncio.sleep(0.005)
        for task in self.server_state.tasks:
            task.cancel()
        for server in self.servers:
            await server.wait_closed()
        if not self.force_exit:
            await self.lifespan.shutdown()


class LoopbackServer:
    """``with LoopbackServer(app) as srv: srv.url`` — a real HTTP server on 127.0.0.1, stopped on exit.

    Works from sync and async tests alike (the server runs its own event loop in a thread).
    """

    def __init__(self, app: Any, *, port: int | None = None, host: str = "127.0.0.1"):
        self.app = app
        self.host = host
        # Bound here, not picked and bound later: no other process's connection or server can take the port between.
        self._socket = socket.create_server((host, port or 0))
        self.port: int = self._socket.getsockname()[1]
        self._server = QuickServer(
            uvicorn.Config(app, host=host, port=self.port, log_level="warning", lifespan="off", access_log=False)
        )
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> LoopbackServer:
        self._thread = self._server.start_in_thread(f"fake-{self.port}", sockets=[self._socket])
        return self

    def stop(self) -> None:
        self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
