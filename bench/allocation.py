"""Hub allocation benchmark: allocations per second from one pool under contention.

    .venv/bin/letsbe-devstack run -- .venv/bin/python bench/allocation.py [--write] [--orders 400] [--levels 1,4,16,32]

Each level starts from a fresh pool of ``--orders`` AVAILABLE build/eu servers and the same number of order-created
decisions, made by N concurrent allocators (own sessions and connections, like N fetchers across processes) all
competing for that one pool. One allocation is the worker's whole unit of work: inbox look-up, SELECT … FOR UPDATE
SKIP LOCKED, reserve, inbox claim and the server-allocated outbox row, committed. The baseline is N = 1 in the same
process; each level reports allocations/s, the ratio to the baseline and latency p50/p95, and checks that no server
went to two orders. With --write the results are appended to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "services/hub-api/tests/support"))  # hub_testing: the hub's test support


async def run_level(sessions, allocator, orders: int, workers: int) -> dict[str, float]:
    from sqlalchemy import func, select, text

    from hub_testing.servers import add_servers, order_spec
    from letsbe_hub.servers.allocation import Outcome
    from letsbe_hub.servers.models import Server

    async with sessions() as s, s.begin():
        await s.execute(text("TRUNCATE hub.servers, hub.inbox, hub.outbox, hub.allocation_holds"))
    for _ in range(0, orders, 200):
        await add_servers(sessions, min(200, orders))
    specs = [order_spec(mode="MANUAL") for _ in range(orders)]
    queue: asyncio.Queue = asyncio.Queue()
    for spec in specs:
        queue.put_nowait(spec)
    latencies: list[float] = []
    outcomes: list[Outcome] = []

    async def worker() -> None:
        while not queue.empty():
            spec = queue.get_nowait()
            t = time.perf_counter()
            outcomes.append(await allocator.allocate(spec, uuid.uuid4()))
            latencies.append(time.perf_counter() - t)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    wall = time.perf_counter() - started

    async with sessions() as s:
        reserved = await s.scalar(select(func.count()).select_from(Server).where(Server.status == "RESERVED"))
        distinct = await s.scalar(select(func.count(func.distinct(Server.order_id))))
    assert outcomes.count(Outcome.POOL) == orders == reserved == distinct, "double booking or lost allocation"
    latencies.sort()
    return {
        "workers": workers,
        "per_second": orders / wall,
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": latencies[int(len(latencies) * 0.95) - 1] * 1000,
        "wall": wall,
    }


async def main(args: argparse.Namespace) -> list[dict[str, float]]:
    import logging

    import asyncpg

    from hub_testing.servers import hub_settings
    from letsbe_hub.servers.allocation import Allocator
    from letsbe_platform import migrations
    from letsbe_platform.db import make_engine, make_session_factory, plain_url

    logging.disable(logging.INFO)  # one log line per allocation would be what we measure
    admin = plain_url(os.environ["DATABASE_URL"]).rsplit("/", 1)[0] + "/postgres"
    name = f"bench_alloc_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    url = admin.rsplit("/", 1)[0] + "/" + name
    try:
        await migrations.upgrade_async(url, ["hub"])
        levels = [int(x) for x in args.levels.split(",")]
        engine = make_engine(url, pool_size=max(levels) + 2, max_overflow=0)
        sessions = make_session_factory(engine)
        allocator = Allocator(sessions, hub_settings(url), None)
        await run_level(sessions, allocator, 50, 4)  # warm-up: connections, statement caches
        results = [await run_level(sessions, allocator, args.orders, n) for n in levels]
        await engine.dispose()
    finally:
        conn = await asyncpg.connect(admin)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()
    return results


def report(results: list[dict[str, float]], orders: int, load: float) -> str:
    base = results[0]["per_second"]
    rows = "\n".join(
        f"| {int(r['workers'])} | {r['per_second']:.0f} | {r['per_second'] / base:.2f}x | {r['p50_ms']:.1f} ms "
        f"| {r['p95_ms']:.1f} ms |"
        for r in results
    )
    return f"""

## Hub: allocations per second with the pool under contention (`bench/allocation.py`)

Run: `.venv/bin/letsbe-devstack run -- .venv/bin/python bench/allocation.py --write` on {os.cpu_count()} cores, embedded
Postgres 16 (devstack) on the same machine. Each level: {orders} order decisions against one pool of {orders} AVAILABLE
build/eu servers, by N concurrent allocators (own connections) competing for that pool; one allocation = inbox
look-up + `SELECT … FOR UPDATE SKIP LOCKED` + reserve + inbox claim + server-allocated outbox row, committed.
Baseline = N = 1 in the same process. Every level checks that no server went to two orders. Load average when the
run started: {load:.1f} (other jobs shared the machine; ratios hold better than absolute numbers).

| concurrent allocators | allocations/s | vs 1 | latency p50 | latency p95 |
|---|---|---|---|---|
{rows}

`SKIP LOCKED` lets concurrent allocators take different rows instead of queueing on the oldest AVAILABLE one, so
throughput grows with concurrency until the two cores (shared by Postgres and the allocators) are busy; latency
then grows with the queue, not with lock waits. Hetzner overflow is bounded by Hetzner (seconds to minutes per
server), not by this path.
"""


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=400)
    parser.add_argument("--levels", default="1,4,16,32")
    parser.add_argument("--write", action="store_true")
    a = parser.parse_args()
    if not os.environ.get("DATABASE_URL"):
        sys.exit("DATABASE_URL is not set: run under `letsbe-devstack run --`")
    load = os.getloadavg()[0]
    res = asyncio.run(main(a))
    text = report(res, a.orders, load)
    print(text)
    if a.write:
        with open(REPO / "docs/benchmarks.md", "a") as fh:
            fh.write(text)
