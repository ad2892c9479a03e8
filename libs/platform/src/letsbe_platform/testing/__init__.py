"""Helpers for tests and for the local stand-ins (devstack, sandbox, fakes) that start real processes and servers.

Nothing here imports pytest: the pytest fixtures live in the repository's root ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
from collections.abc import Awaitable, Callable
from typing import Any


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on at ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


async def eventually(
    check: Callable[[], Any | Awaitable[Any]], what: str = "", *, timeout: float = 10.0, every: float = 0.05
) -> Any:
    """Poll ``check()`` (a plain or an async callable) until it returns something truthy, and return that.

    Fails with an AssertionError naming ``what`` when it is still falsy after ``timeout`` seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"not true after {timeout}s: {what or check}")
        await asyncio.sleep(every)
