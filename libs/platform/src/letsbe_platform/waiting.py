"""Waiting for something that becomes true elsewhere: one poll loop for every such wait in the control plane.

A poll starts short and backs off (a Hetzner action that is already done, a DNS record the nameserver already
serves, is seen after a few milliseconds, and one that takes minutes costs a request every ``cap`` seconds).
Where the awaited thing can tell us (an agent registered, a row committed), its notification sets a
:class:`Wakeups` event and the wait ends at once; the poll stays as the fallback, so a lost notification costs at
most one poll interval, never a stuck wait.

Reconnecting to something that went away (the agents to the hub) uses the same delays with full jitter
(:class:`FullJitter`), so a fleet that lost the hub at the same moment does not come back in one wave. Standard
library only: the tenant agents import this module too.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Hashable, Iterator
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

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

    def nth(self, n: int) -> float:
        """The ``n``-th delay (from 1): what a retry waits after ``n`` failed attempts."""
        return min(self.first * self.factor ** min(n - 1, 64), self.cap)

    def delays(self) -> Iterator[float]:
        delay = min(self.first, self.cap)
        while True:
            yield delay
            delay = min(delay * self.factor, self.cap)


class FullJitter:
    """Exponential backoff with full jitter: a random delay in [0, the next ``Backoff(base, cap)`` delay], growing
    from attempt to attempt; :meth:`reset` after a success starts again from ``base``."""

    def __init__(self, base: float, cap: float, rng: random.Random | None = None):
        self.backoff = Backoff(base, cap)
        self._ceilings = self.backoff.delays()
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        return self._rng.uniform(0, next(self._ceilings))

    def reset(self) -> None:
        self._ceilings = self.backoff.delays()


def jittered(interval: float, fraction: float, rng: random.Random | None = None) -> float:
    """``interval`` ± ``fraction`` of it, at random (never below 50 ms): a fleet started together does not beat
    together."""
    r = rng or random
    return max(0.05, interval * (1 + r.uniform(-fraction, fraction)))


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

    def waiting(self, key: Hashable) -> bool:
        return key in self._waiting

    def notify(self, key: Hashable) -> None:
        for event in self._waiting.get(key, ()):
            event.set()


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait by an HTTP ``Retry-After`` header, in either of its forms (``120`` or an HTTP date); None
    when there is none or it is neither (a provider's advice we cannot read is no advice)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
