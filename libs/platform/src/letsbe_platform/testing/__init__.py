"""Helpers for tests and for the local stand-ins (devstack, sandbox, fakes) that start real processes and servers.

Nothing here imports pytest: the pytest fixtures live in the repository's root ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

# Under pytest-xdist each worker (and the processes its tests start, which inherit PYTEST_XDIST_WORKER) takes ports
# from a block of its own below the kernel's ephemeral range (32768-60999 on Linux): a port one worker chose cannot
# be handed to another worker's process in the moment before it is bound, as a port from bind(0) can.
_WORKER_BLOCK, _FIRST_BLOCK = 2000, 12000
_cursor = random.randrange(_WORKER_BLOCK)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on at ``host`` right now."""
    global _cursor
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        first = _FIRST_BLOCK + (int(worker[2:]) % 8) * _WORKER_BLOCK
        for _ in range(_WORKER_BLOCK):
            _cursor = (_cursor + 1) % _WORKER_BLOCK
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((host, first + _cursor))
                except OSError:
                    continue
                return first + _cursor
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


def eventually_blocking(check: Callable[[], Any], what: str = "", *, timeout: float = 10.0, every: float = 0.05) -> Any:
    """:func:`eventually` for code that cannot await (a sync test, a thread): the same polls, blocking between them."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout}s: {what or check}")
        time.sleep(every)
    return result
