"""A simulator of N tenant agents (like osquery-perf for Fleet): register, heartbeat, long-poll and run commands
against a running hub, over its real HTTP API.

    # agents from registration tokens minted with an admin token (the full protocol):
    python bench/agents_sim.py register --hub http://127.0.0.1:3847 --admin-token lbh_… -n 100 --out agents.json
    # or agents seeded straight into the database (fast, for 10,000+; registration is not what is measured):
    python bench/agents_sim.py seed -n 10000 --out agents.json            # needs DATABASE_URL
    python bench/agents_sim.py heartbeat --hub … --agents agents.json --duration 120
    python bench/agents_sim.py rollout --hub … --admin-token … --agents agents.json -n 200 --soak 2

Each simulated agent heartbeats at the interval the hub answers (± 10 % jitter, first beat spread over one
interval, as real agents do), acknowledges and answers the commands it is given (an update "succeeds" after
``--update-seconds``), and records each heartbeat's latency. Results print as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    ok: int = 0
    errors: int = 0
    commands: int = 0

    def summary(self, seconds: float) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def pct(p: float) -> float:
            return round(lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1000, 2) if lat else 0.0

        return {
            "heartbeats_ok": self.ok,
            "errors": self.errors,
            "rate_per_s": round(self.ok / seconds, 1) if seconds else 0,
            "p50_ms": pct(50),
            "p99_ms": pct(99),
            "max_ms": round(lat[-1] * 1000, 2) if lat else 0,
            "commands_run": self.commands,
        }


class SimAgent:
    def __init__(self, client: httpx.AsyncClient, key: str, stats: Stats, *, update_seconds: float):
        self.client = client
        self.headers = {"Authorization": f"Bearer {key}"}
        self.stats = stats
        self.update_seconds = update_seconds
        self.seq = int(time.time() * 1000)
        self.interval = 60.0
        self._busy: set[str] = set()
        self._tasks: set[asyncio.Task] = set()

    async def beat(self) -> None:
        self.seq += 1
        started = time.perf_counter()
        try:
            r = await self.client.post(
                "/api/v1/tenant/heartbeat", json={"seq": self.seq, "version": "1.0.0"}, headers=self.headers
            )
        except httpx.HTTPError:
            self.stats.errors += 1
            return
        if r.status_code != 200:
            self.stats.errors += 1
            return
        self.stats.latencies.append(time.perf_counter() - started)
        self.stats.ok += 1
        body = r.json()
        self.interval = body["interval_seconds"]
        for c in body["commands"]:
            self._spawn(self.run_command(c))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run_command(self, c: dict[str, Any]) -> None:
        if c["id"] in self._busy:
            return
        self._busy.add(c["id"])
        try:
            ack = await self.client.post(f"/api/v1/tenant/commands/{c['id']}/ack", headers=self.headers)
            if ack.status_code != 200 or not ack.json()["run"]:
                return
            await asyncio.sleep(self.update_seconds)
            result = {"status": "SUCCEEDED", "result": {"simulated": True}}
            await self.client.post(f"/api/v1/tenant/commands/{c['id']}/result", json=result, headers=self.headers)
            self.stats.commands += 1
        finally:
            self._busy.discard(c["id"])

    async def heartbeat_loop(self, stop: asyncio.Event, first_within: float) -> None:
        await _sleep(stop, random.uniform(0, first_within))
        while not stop.is_set():
            await self.beat()
            await _sleep(stop, self.interval * random.uniform(0.9, 1.1))

    async def long_poll_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                r = await self.client.get("/api/v1/tenant/commands?wait=25", headers=self.headers, timeout=40)
                for c in r.json().get("commands", []):
                    self._spawn(self.run_command(c))
            except (httpx.HTTPError, ValueError):
                await _sleep(stop, 1)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


def _client(hub: str, connections: int = 200) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=hub, limits=limits, timeout=30)


def _clients(hub: str, n_agents: int, per_client: int, connections: int) -> list[httpx.AsyncClient]:
    """Many small connection pools rather than one big one: httpcore's pool costs O(waiting × connections) per
    request, which would make the simulator, not the hub, the bottleneck with thousands of agents."""
    return [_client(hub, connections) for _ in range(max(1, -(-n_agents // per_client)))]


# --- creating agents ---------------------------------------------------------------------------------------------


async def register(hub: str, admin_token: str, n: int, staging: int) -> list[dict[str, str]]:
    admin = {"Authorization": f"Bearer {admin_token}"}
    out = []
    async with _client(hub, 20) as client:
        sem = asyncio.Semaphore(20)

        async def one(i: int) -> None:
            async with sem:
                tid = uuid.uuid4()
                body = {
                    "domain": f"sim{i}-{tid.hex[:6]}.example.com",
                    "order_id": str(tid),
                    "tier": "build",
                    "region": "eu",
                }
                r = await client.post(f"/api/v1/admin/tenants/{tid}/registration-tokens", json=body, headers=admin)
                r.raise_for_status()
                reg = {
                    "registration_token": r.json()["token"],
                    "agent": "safety-wrapper",
                    "version": "1.0.0",
                    "hostname": f"sim{i}",
                }
                r = await client.post("/api/v1/tenant/register", json=reg)
                r.raise_for_status()
                if i < staging:
                    await client.patch(f"/api/v1/admin/tenants/{tid}", json={"staging": True}, headers=admin)
                out.append({"tenant_id": str(tid), "api_key": r.json()["api_key"]})

        await asyncio.gather(*(one(i) for i in range(n)))
    return out


async def seed(database_url: str, n: int, staging: int) -> list[dict[str, str]]:
    """Tenants, agents and credentials written straight to the hub schema (the shapes registration writes)."""
    import asyncpg

    from letsbe_platform.db import plain_url

    rows_t, rows_a, rows_c, out = [], [], [], []
    for i in range(n):
        tid, aid = uuid.uuid4(), uuid.uuid4()
        key = f"lba_sim_{tid.hex}"
        domain = f"sim{i}-{tid.hex[:6]}.example.com"
        rows_t.append((tid, tid, domain, "build", "eu", "ACTIVE", i < staging))
        rows_a.append((aid, tid, "safety-wrapper", domain, "1.0.0", f"sim{i}"))
        rows_c.append((uuid.uuid4(), aid, hashlib.sha256(key.encode()).hexdigest()))
        out.append({"tenant_id": str(tid), "api_key": key})
    conn = await asyncpg.connect(plain_url(database_url))
    try:
        async with conn.transaction():
            await conn.copy_records_to_table(
                "tenants", schema_name="hub", records=rows_t,
                columns=["id", "order_id", "domain", "tier", "region", "status", "staging"],
            )  # fmt: skip
            await conn.copy_records_to_table(
                "agents", schema_name="hub", records=rows_a,
                columns=["id", "tenant_id", "kind", "domain", "version", "hostname"],
            )  # fmt: skip
            await conn.copy_records_to_table(
                "agent_credentials", schema_name="hub", records=rows_c, columns=["id", "agent_id", "key_hash"]
            )
        await conn.execute("ANALYZE hub.agents; ANALYZE hub.agent_credentials; ANALYZE hub.tenants")
    finally:
        await conn.close()
    return out


# --- running agents ----------------------------------------------------------------------------------------------


async def heartbeat(
    hub: str, agents: list[dict[str, str]], duration: float, first_within: float | None
) -> dict[str, Any]:
    stats = Stats()
    stop = asyncio.Event()
    clients = _clients(hub, len(agents), per_client=50, connections=4)
    try:
        sims = [
            SimAgent(clients[i % len(clients)], a["api_key"], stats, update_seconds=0.1) for i, a in enumerate(agents)
        ]
        # the first answer tells the interval; spread the first beats over it like a fleet that has been running
        await sims[0].beat()
        stats.latencies.clear()
        stats.ok = 0
        for s in sims:
            s.interval = sims[0].interval
        spread = first_within if first_within is not None else sims[0].interval
        gc.freeze()  # 10,000 long-lived agents: keep full collections from pausing the simulator's clock
        started = time.monotonic()
        tasks = [asyncio.create_task(s.heartbeat_loop(stop, spread)) for s in sims]
        await asyncio.sleep(duration)
        stop.set()
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - started
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    return {"agents": len(agents), "interval_s": sims[0].interval, "duration_s": round(elapsed, 1)} | stats.summary(
        elapsed
    )


async def rollout(
    hub: str, admin_token: str, agents: list[dict[str, str]], soak: int, concurrency: int, update_seconds: float
) -> dict[str, Any]:
    """Time to roll a release across these tenants: every stage's soak shortened to ``soak`` seconds, the approval
    before 100 % given as soon as it is asked for."""
    admin = {"Authorization": f"Bearer {admin_token}"}
    stats = Stats()
    stop = asyncio.Event()
    clients = _clients(hub, len(agents), per_client=10, connections=25)
    client = clients[0]
    try:
        sims = [
            SimAgent(clients[i % len(clients)], a["api_key"], stats, update_seconds=update_seconds)
            for i, a in enumerate(agents)
        ]
        polls = [asyncio.create_task(s.long_poll_loop(stop)) for s in sims]
        beats = [asyncio.create_task(s.heartbeat_loop(stop, 1.0)) for s in sims]
        await asyncio.sleep(1.5)
        body = {
            "component": "openclaw",
            "image": "registry.letsbe.biz/letsbe/openclaw",
            "digest": "sha256:" + hashlib.sha256(str(time.time()).encode()).hexdigest(),
            "version": f"{int(time.time())}.0.0",
            "concurrency": concurrency,
            "stages": [
                {"name": "staging", "staging": True, "soak_seconds": soak},
                {"name": "canary-5", "percent": 5, "soak_seconds": soak},
                {"name": "wide-25", "percent": 25, "soak_seconds": soak, "max_failure_ratio": 0.02},
                {"name": "all-100", "percent": 100, "requires_approval": True, "max_failure_ratio": 0.02},
            ],
        }
        started = time.monotonic()
        r = await client.post("/api/v1/admin/rollouts", json=body, headers=admin)
        r.raise_for_status()
        rid = r.json()["id"]
        stage_times: dict[str, float] = {}
        while True:
            v = (await client.get(f"/api/v1/admin/rollouts/{rid}", headers=admin)).json()
            stage_times.setdefault(v["stage"], round(time.monotonic() - started, 1))
            if v["status"] == "AWAITING_APPROVAL":
                await client.post(f"/api/v1/admin/rollouts/{rid}/approve", headers=admin)
            if v["status"] in ("COMPLETED", "ABORTED", "PAUSED"):
                break
            await asyncio.sleep(0.25)
        elapsed = time.monotonic() - started
        stop.set()
        for t in polls:
            t.cancel()
        await asyncio.gather(*beats, *polls, return_exceptions=True)
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    sizes = {s["name"]: s["targets"] for s in v["stages"]}
    return {
        "tenants": len(agents),
        "status": v["status"],
        "seconds": round(elapsed, 1),
        "soak_s": soak,
        "concurrency": concurrency,
        "update_s": update_seconds,
        "stages": sizes,
        "stage_started_at_s": stage_times,
        "updates_run": stats.commands,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("register", "seed", "heartbeat", "rollout"):
        s = sub.add_parser(name)
        s.add_argument("--hub", default="http://127.0.0.1:3847")
        s.add_argument("--admin-token", default=os.environ.get("LETSBE_HUB_BOOTSTRAP_ADMIN_TOKEN"))
        s.add_argument("--agents", type=Path, help="JSON file of agents (from register/seed)")
        s.add_argument("--out", type=Path)
        s.add_argument("-n", type=int, default=100)
        s.add_argument("--staging", type=int, default=1)
        s.add_argument("--duration", type=float, default=60)
        s.add_argument("--first-within", type=float, default=None)
        s.add_argument("--soak", type=int, default=2)
        s.add_argument("--concurrency", type=int, default=20)
        s.add_argument("--update-seconds", type=float, default=0.5)
    a = p.parse_args(argv)
    if a.cmd in ("register", "seed"):
        if a.cmd == "register":
            agents = asyncio.run(register(a.hub, a.admin_token, a.n, a.staging))
        else:
            agents = asyncio.run(seed(os.environ["DATABASE_URL"], a.n, a.staging))
        (a.out or Path("agents.json")).write_text(json.dumps(agents))
        print(json.dumps({"agents": len(agents)}))
        return
    agents = json.loads(a.agents.read_text())
    if a.cmd == "heartbeat":
        print(json.dumps(asyncio.run(heartbeat(a.hub, agents[: a.n] if a.n else agents, a.duration, a.first_within))))
    else:
        print(
            json.dumps(
                asyncio.run(rollout(a.hub, a.admin_token, agents[: a.n], a.soak, a.concurrency, a.update_seconds))
            )
        )


if __name__ == "__main__":
    sys.exit(main())
