"""A small in-process sliding-window limiter for unauthenticated web forms (customers' sign-in requests, operators'
failed sign-ins), keyed by the browser's address.

Per hub process: with N replicas a client gets N times the limit at most, which is enough to stop a flood of
emails or guesses (the per-email limit and the per-account lock in the database hold across replicas). Memory is
bounded: old keys are pruned.
"""

from __future__ import annotations

import ipaddress
import time
from collections import deque
from collections.abc import Callable

from starlette.requests import Request

MAX_KEYS = 50_000


def client_address(request: Request) -> str:
    """The browser's address. Behind the hub's nginx (the peer is a loopback or private address) that is nginx's
    ``X-Real-IP``; a peer on a public address is the client itself, and its header is ignored."""
    peer = request.client.host if request.client else ""
    try:
        internal = ipaddress.ip_address(peer).is_private  # loopback counts as private
    except ValueError:
        return peer or "unknown"
    real = request.headers.get("x-real-ip", "").strip()
    if internal and real:
        try:
            return str(ipaddress.ip_address(real))
        except ValueError:
            pass
    return peer


def app_limiter(request: Request, name: str, make: Callable[[], RateLimiter]) -> RateLimiter:
    """The app's limiter ``name``, made by ``make`` on its first use: one per app, so each app (each test's too)
    counts alone."""
    limiter = getattr(request.app.state, name, None)
    if limiter is None:
        limiter = make()
        setattr(request.app.state, name, limiter)
    return limiter


class RateLimiter:
    """At most ``limit`` events per key in a sliding window of ``window_seconds``: requests (:meth:`allow`), or only
    the events the caller notes (failed sign-ins: :meth:`full` before, :meth:`note` after)."""

    def __init__(self, limit: int, window_seconds: float, *, clock=time.monotonic):
        self.limit = limit
        self.window = window_seconds
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}

    def allow(self, key: str) -> bool:
        """Count a request of ``key``; False when it is over the limit (the refused request is not counted)."""
        if self.full(key):
            return False
        self.note(key)
        return True

    def full(self, key: str) -> bool:
        """True if ``key`` has had ``limit`` events within the window."""
        hits = self._hits.get(key)
        if hits is None:
            return False
        while hits and hits[0] <= self.clock() - self.window:
            hits.popleft()
        if not hits:
            del self._hits[key]
        return len(hits) >= self.limit

    def note(self, key: str) -> None:
        """Count one event of ``key``."""
        now = self.clock()
        if key not in self._hits and len(self._hits) >= MAX_KEYS:
            self._prune(now)
        self._hits.setdefault(key, deque()).append(now)

    def _prune(self, now: float) -> None:
        for key in [k for k, h in self._hits.items() if not h or h[-1] <= now - self.window]:
            del self._hits[key]
        while len(self._hits) >= MAX_KEYS:  # all recent: drop the oldest keys (a flood of distinct addresses)
            del self._hits[next(iter(self._hits))]
