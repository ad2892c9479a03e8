"""The periodic worker and its Postgres lease, against real Postgres: several replicas, one acts; a dead holder's
lease passes to another replica."""

from __future__ import annotations

import asyncio
from collections import Counter

import asyncpg

from letsbe_platform.testing import eventually
from letsbe_platform.workers import Lease, Periodic


async def _run(*workers: Periodic) -> list[asyncio.Task[None]]:
    return [asyncio.create_task(w.run()) for w in workers]


async def _stop(workers: list[Periodic], tasks: list[asyncio.Task[None]]) -> None:
    for w in workers:
        w.stop()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)


async def test_a_failing_round_is_retried_and_a_busy_round_runs_again_at_once():
    calls: list[str] = []

    async def job() -> int:
        calls.append("x")
        if len(calls) == 1:
            raise RuntimeError("first round fails")
        return 1 if len(calls) < 5 else 0  # rounds 2..4 say "there is more"

    worker = Periodic("test-retry", job, every=0.01)
    tasks = await _run(worker)
    await eventually(lambda: len(calls) >= 5, "five rounds despite the failed first one")
    await _stop([worker], tasks)


async def test_kick_starts_the_next_round_without_waiting_the_interval():
    rounds = 0

    async def job() -> None:
        nonlocal rounds
        rounds += 1

    worker = Periodic("test-kick", job, every=3600)
    tasks = await _run(worker)
    await eventually(lambda: rounds == 1, "the first round")
    worker.kick()
    await eventually(lambda: rounds == 2, "a kicked round long before the hour is up")
    await _stop([worker], tasks)


async def test_with_a_lease_exactly_one_replica_acts_and_another_takes_over_when_it_dies(database_url: str):
    acted: Counter[str] = Counter()

    def replica(name: str) -> Periodic:
        async def job() -> None:
            acted[name] += 1

        return Periodic("test-leased", job, every=0.02, lease=Lease(database_url, "test-leased"))

    replicas = {name: replica(name) for name in ("a", "b", "c")}
    tasks = await _run(*replicas.values())
    await eventually(lambda: sum(acted.values()) >= 20, "twenty rounds")
    holders = [name for name, n in acted.items() if n]
    assert len(holders) == 1, acted  # the others only checked the lease
    holder = holders[0]

    # The holder's session ends as a SIGKILL would end it: Postgres frees the lock, a survivor takes it.
    conn = await asyncpg.connect(database_url)
    try:
        lease = replicas[holder].lease
        assert lease is not None
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 "
            "AND pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)",
            "test-leased",
        )
    finally:
        await conn.close()
    replicas[holder].stop()
    await asyncio.wait_for(tasks[list(replicas).index(holder)], timeout=10)
    before = dict(acted)
    survivors = [n for n in replicas if n != holder]
    await eventually(lambda: any(acted[n] > before.get(n, 0) + 5 for n in survivors), "a survivor acts")
    assert sum(1 for n in survivors if acted[n] > before.get(n, 0)) == 1, acted
    await _stop([replicas[n] for n in survivors], [t for n, t in zip(replicas, tasks, strict=True) if n != holder])


async def test_a_stopped_holder_releases_its_lease_at_once(database_url: str):
    lease = Lease(database_url, "test-release")
    other = Lease(database_url, "test-release")
    assert await lease.acquire()
    assert await lease.acquire()  # still the holder, not a second lock
    assert not await other.acquire()
    await lease.release()
    assert await other.acquire()
    await other.release()


async def test_a_client_the_workers_share_is_closed_only_once_every_worker_has_stopped():
    """At shutdown a worker finishes the round it is in (a Stripe call, say): the client it uses is closed after that
    round, not under it (its call would fail, and the SDK would retry it against a closed client)."""
    from letsbe_platform.asgi import Runtime
    from letsbe_platform.service_config import ServiceConfig

    rt = Runtime(ServiceConfig())
    said: list[str] = []

    class Client:
        closed = False

        async def aclose(self) -> None:
            said.append("client closed")
            self.closed = True

    client = Client()
    rt.close_last(client.aclose)

    answered = asyncio.Event()  # the answer to the round's call in flight

    async def round_() -> None:
        said.append("round started")
        await answered.wait()
        said.append(f"round done, client closed: {client.closed}")

    worker = rt.every("test-shared-client", 3600, round_)
    await eventually(lambda: said == ["round started"], "the first round under way")
    closing = asyncio.create_task(rt.aclose())
    await eventually(lambda: worker.stopping, "the shutdown under way, the worker asked to stop")
    answered.set()  # only now does the round finish: the client must still be open for it
    await asyncio.wait_for(closing, timeout=10)
    assert said == ["round started", "round done, client closed: False", "client closed"]
