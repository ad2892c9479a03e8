"""Per-address limits (letsbe_hub.web.limits): a window opens at a key's first attempt, so a burst is judged the same
wherever the clock stands, and attempts from any number of replicas count once each."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from letsbe_hub.web import limits
from letsbe_platform.db import unit_of_work
from letsbe_platform.errors import TooManyRequests

# One second before a clock minute turns: a window aligned to the clock would start over in the middle of the burst.
T = datetime(2026, 12, 4, 17, 0, 59, tzinfo=UTC)


async def attempt(sessions, at: datetime, key: str = "sign-in:203.0.113.7") -> None:
    async with unit_of_work(sessions) as session:
        await limits.hit(session, key, limit=3, window_seconds=60, now=at, what="tries")


async def test_a_window_opens_at_the_first_attempt_and_holds_its_limit_across_clock_boundaries(sessions):
    for seconds in (0, 0.5, 2):  # 17:00:59, then into the next clock minute
        await attempt(sessions, T + timedelta(seconds=seconds))
    with pytest.raises(TooManyRequests) as refused:
        await attempt(sessions, T + timedelta(seconds=30))
    assert refused.value.extra["retry_after_seconds"] == 31  # the window opened at T and closes at T + 60 s
    assert "Too many tries from this address" in str(refused.value)
    await attempt(sessions, T + timedelta(seconds=2), key="sign-in:198.51.100.1")  # another address: its own window

    # The window closed: a new one opens with the next attempt, and the refused ones did not carry over.
    for seconds in (60, 61, 62):
        await attempt(sessions, T + timedelta(seconds=seconds))
    with pytest.raises(TooManyRequests):
        await attempt(sessions, T + timedelta(seconds=63))


async def test_failures_noted_and_read_by_window(sessions):
    key = "operator-sign-in-failures:203.0.113.7"
    async with unit_of_work(sessions) as session:
        assert await limits.hits(session, key, window_seconds=900, now=T) == 0
        assert [await limits.note(session, key, window_seconds=900, now=T) for _ in range(3)] == [1, 2, 3]
        assert await limits.hits(session, key, window_seconds=900, now=T + timedelta(seconds=899)) == 3
        assert await limits.hits(session, key, window_seconds=900, now=T + timedelta(seconds=900)) == 0


async def test_concurrent_attempts_each_count_once(sessions):
    key = "public-order:203.0.113.9"

    async def one() -> int:
        async with unit_of_work(sessions) as session:
            return await limits.note(session, key, window_seconds=3600, now=T)

    counts = await asyncio.gather(*(one() for _ in range(20)))
    assert sorted(counts) == list(range(1, 21))
