"""Per-tool rate limit and loop limit (in memory: a restart forgives, which is fine for limits this short).

What is remembered is bounded whatever the agent sends: at most ``MAX_TRACKED`` tools and ``MAX_TRACKED`` distinct
calls, the least recently used forgotten first (a call not seen for that long is not a loop), and per key no more
timestamps than its limit allows.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from letsbe_safety_wrapper.tools.errors import LoopDetected, RateLimited
from letsbe_safety_wrapper.tools.policy import Limits

MAX_TRACKED = 10_000


def _recent(table: dict[str, deque[float]], key: str) -> deque[float]:
    """The key's timestamps, marked most recently used (dicts keep insertion order: the first is the oldest)."""
    times = table.pop(key, None)
    table[key] = times if times is not None else deque()
    if len(table) > MAX_TRACKED:
        del table[next(iter(table))]
    return table[key]


class CallLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._by_tool: dict[str, deque[float]] = {}
        self._by_call: dict[str, deque[float]] = {}

    def check(self, tool: str, call_hash: str, limits: Limits) -> None:
        """Raise if one more call would exceed a limit; record it otherwise."""
        now = self._clock()
        recent = _recent(self._by_tool, tool)
        while recent and recent[0] <= now - 60:
            recent.popleft()
        if len(recent) >= limits.per_minute:
            retry = max(1, int(recent[0] + 60 - now) + 1)
            raise RateLimited(
                f"{tool} allows {limits.per_minute} calls a minute; retry in {retry} s.",
                retry_after_seconds=retry,
            )
        same = _recent(self._by_call, call_hash)
        while same and same[0] <= now - limits.loop_window_seconds:
            same.popleft()
        if len(same) >= limits.loop_repeats:
            raise LoopDetected(
                f"This exact call ran {len(same)} times in {limits.loop_window_seconds:g} s; change the approach "
                "instead of repeating it.",
                loop_repeats=limits.loop_repeats,
            )
        recent.append(now)
        same.append(now)
