"""Waiting for something that becomes true elsewhere: one poll loop for every such wait in the control plane.

A poll starts short and backs off (a Hetzner action that is already done, a DNS record the nameserver already
serves, is seen after a few milliseconds, and one that takes minutes costs a request every ``cap`` seconds).
Where the awaited thing can tell us (an agent registered, a row committed), its notification sets a
:class:`Wakeups` event and the wait ends at once; the poll stays as the fallback, so a lost notification costs at
most one poll interval, never a stuck wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Hashable, Iterator
from dataclasses import dataclass

# How often a long wait tells its caller it is still alive (a JetStream in_progress()), at most.
HEARTBEAT_EVERY = 1.0


@dataclass(frozen=True)
class Backoff:
    """Delays of ``first``, ``first·factor``, … up to ``cap`` (a constant ``cap`` when ``first >= cap``)."""

    first: float
    cap: float
    factor: float = 2.0

    def __post_init__(self) -> None:
        if self.first <= 0 or self.cap <= 0 or self.factor < 1:
            raise ValueError(f"a backoff needs positive delays and factor >= 1, not {self}")

    @classmethod
    def constant(cls, interval: float) -> Backoff:
        return cls(interval, interval)

    def delays(self) -> Iterator[float]:
        delay = min(self.first, self.cap)
        while True:
            yield delay
            delay = min(delay * self.factor, self.cap)


async def poll_until(
    check: Callable[[], Awaitable[bool]],
    *,
    timeout: float,
    backoff: Backoff,
    heartbeat: Callable[[], Awaitable[None]] | None = None,
    wake: asyncio.Event | None = None,
) -> bool:
    """Call ``check`` until it returns True (→ True) or ``timeout`` passes (→ False), waiting the next backoff delay
    in between, or less when ``wake`` is set (a hint that the answer may have changed: check again now)."""
    started = last_beat = time.monotonic()
    deadline = started + timeout
    for delay in backoff.delays():
        if wake is not None:
            wake.clear()  # before the check: a notification arriving during it makes the next wait end at once
        if await check():
            return True
        now = time.monotonic()
        if now >= deadline:
            return False
        if heartbeat is not None and now - last_beat >= HEARTBEAT_EVERY:
            await heartbeat()
            last_beat = now
        await wait_or_wake(wake, min(delay, deadline - now))
    return False  # pragma: no cover - delays() never ends


async def wait_or_wake(wake: asyncio.Event | None, seconds: float) -> None:
    """Sleep ``seconds``, or until ``wake`` is set."""
    if wake is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wake.wait(), timeout=seconds)


class Wakeups:
    """In-process wake-ups by key (a tenant id, …): a waiter holds an event while it waits, a notification for its
    key sets it. Nothing is remembered for a key nobody waits on, so a waiter checks the state itself first."""

    def __init__(self) -> None:
        self._waiting: dict[Hashable, set[asyncio.Event]] = {}

    @contextlib.contextmanager
    def expect(self, key: Hashable) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self._waiting.setdefault(key, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._waiting.get(key)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiting[key]

    def notify(self, key: Hashable) -> None:
        for event in self._waiting.get(key, ()):
            event.set()
