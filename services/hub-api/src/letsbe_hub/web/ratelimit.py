"""A small in-process sliding-window limiter for unauthenticated web forms (sign-in requests).

Per hub process: with N replicas a client gets N times the limit at most, which is enough to stop a flood of
emails (the per-email limit in the database holds across replicas). Memory is bounded: old keys are pruned.
"""

from __future__ import annotations

import ipaddress
import time
from collections import deque

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


class RateLimiter:
    def __init__(self, limit: int, window_seconds: float, *, clock=time.monotonic):
        self.limit = limit
        self.window = window_seconds
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}

    def allow(self, key: str) -> bool:
        """Count a request of ``key``; False when it is over the limit (the refused request is not counted)."""
        now = self.clock()
        if len(self._hits) >= MAX_KEYS:
            self._prune(now)
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return False
        hits.append(now)
        return True

    def _prune(self, now: float) -> None:
        for key in [k for k, h in self._hits.items() if not h or h[-1] <= now - self.window]:
            del self._hits[key]
        while len(self._hits) >= MAX_KEYS:  # all recent: drop the oldest keys (a flood of distinct addresses)
            del self._hits[next(iter(self._hits))]
