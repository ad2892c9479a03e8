"""The one poll loop: backoff from a short first wait, notifications that end a wait, the poll as the fallback.

Each wait that must end early is configured an hour long, so only the behaviour under test can finish it; the
``asyncio.timeout`` around it only turns a hang into a failure."""

import asyncio
import itertools

import pytest

from letsbe_platform.waiting import Backoff, Wakeups, parse_retry_after, poll_until

HOUR = 3600.0


def test_backoff_doubles_from_the_first_wait_up_to_the_cap():
    assert list(itertools.islice(Backoff(0.005, 0.04).delays(), 6)) == [0.005, 0.01, 0.02, 0.04, 0.04, 0.04]
    assert list(itertools.islice(Backoff(5, 2).delays(), 2)) == [2, 2], "a first wait above the cap is the cap"
    assert list(itertools.islice(Backoff.constant(0.5).delays(), 2)) == [0.5, 0.5]
    with pytest.raises(ValueError):
        Backoff(0, 1)


def test_a_retry_after_n_failed_attempts_waits_the_nth_delay():
    retry = Backoff(30, 3600)
    assert [retry.nth(n) for n in (1, 2, 3, 7, 8, 1000)] == [30, 60, 120, 1920, 3600, 3600]
    assert [retry.nth(n) for n in range(1, 10)] == list(itertools.islice(retry.delays(), 9))


async def test_poll_until_checks_again_after_each_backoff_until_true():
    answers = iter([False, False, False, True])
    calls = 0

    async def check() -> bool:
        nonlocal calls
        calls += 1
        return next(answers)

    async with asyncio.timeout(30):
        assert await poll_until(check, timeout=HOUR, backoff=Backoff(0.001, 0.004)) is True
    assert calls == 4


async def test_poll_until_gives_up_after_the_timeout_having_checked_at_least_once():
    calls = 0

    async def never() -> bool:
        nonlocal calls
        calls += 1
        return False

    assert await poll_until(never, timeout=0, backoff=Backoff.constant(HOUR)) is False
    assert calls == 1


async def test_a_notification_during_a_check_ends_the_next_wait_at_once():
    """The wake-up that arrives while the state is being read is not lost (cleared before the check, not after)."""
    wake = asyncio.Event()
    calls = 0

    async def check() -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            wake.set()  # the thing became ready (and said so) while we were still reading the old state
            return False
        return True

    async with asyncio.timeout(30):
        assert await poll_until(check, timeout=HOUR, backoff=Backoff.constant(HOUR), wake=wake) is True
    assert calls == 2


async def test_a_lost_notification_costs_one_poll_interval_not_the_wait():
    wake = asyncio.Event()  # never set: the notification was lost
    ready = asyncio.Event()
    calls = 0

    async def check() -> bool:
        nonlocal calls
        calls += 1
        if calls == 2:
            ready.set()
        return ready.is_set() and calls > 2

    async with asyncio.timeout(30):
        assert await poll_until(check, timeout=HOUR, backoff=Backoff.constant(0.01), wake=wake) is True


async def test_wakeups_reach_every_waiter_of_their_key_and_no_other():
    wakeups = Wakeups()
    with wakeups.expect("a") as a1, wakeups.expect("a") as a2, wakeups.expect("b") as b:
        wakeups.notify("a")
        wakeups.notify("nobody-waits-for-this")
        assert a1.is_set() and a2.is_set() and not b.is_set()
    with wakeups.expect("a") as again:
        assert not again.is_set(), "a notification is not kept for a later waiter: it checks the state itself"


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0),  # the HTTP-date form, 10 s after "now"
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # a date already past: go ahead
        ("Wednesday, 21-Oct-15 07:28:10 GMT", 10.0),  # the obsolete RFC 850 form that HTTP still accepts
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("nan", None),
        ("inf", None),
        ("\u0663", None),  # a digit, but not an ASCII one
        ("", None),
        (None, None),
    ],
)
def test_retry_after_reads_both_forms_and_nothing_else(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=1445412480.0) == seconds
