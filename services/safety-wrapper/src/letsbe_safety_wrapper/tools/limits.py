"""Per-tool rate limit and loop limit (in memory: a restart forgives, which is fine for limits this short)."""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable

from letsbe_safety_wrapper.tools.errors import LoopDetected, RateLimited
from letsbe_safety_wrapper.tools.policy import Limits


class CallLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._by_tool: dict[str, deque[float]] = defaultdict(deque)
        self._by_call: dict[str, deque[float]] = defaultdict(deque)

    def check(self, tool: str, call_hash: str, limits: Limits) -> None:
        """Raise if one more call would exceed a limit; record it otherwise."""
        now = self._clock()
        recent = self._by_tool[tool]
        while recent and recent[0] <= now - 60:
            recent.popleft()
        if len(recent) >= limits.per_minute:
            retry = max(1, int(recent[0] + 60 - now) + 1)
            raise RateLimited(
                f"{tool} allows {limits.per_minute} calls a minute; retry in {retry} s.",
                retry_after_seconds=retry,
            )
        same = self._by_call[call_hash]
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
        if len(self._by_call) > 10_000:  # forget idle calls so memory stays flat
            for key in [k for k, v in self._by_call.items() if not v or v[-1] <= now - 86_400]:
                del self._by_call[key]
