"""Scaling benchmark: heartbeats/s with 1, 2 and 4 hub processes on this machine, and what saturates.

    apt-get install -y wrk     # the load generator (Debian package)
    .venv/bin/letsbe-devstack run -- .venv/bin/python bench/scaling.py [--write] [--seconds 8] [--connections 64]

Four hub processes (``python -m letsbe_hub``, the same as ``LETSBE_REPLICAS=4``) start against one Postgres and
one NATS, with ``--agents`` agents seeded into the hub schema. Each round loads the first N of them (N = 1, 2, 4,
then 1 again, so the drift of a shared machine shows) with ``--connections`` wrk connections in all, split evenly
over one wrk per process (bench/heartbeat_load.lua: a random agent, a fresh seq each request); the idle hubs stay
up, as idle replicas would. Nothing is pinned: everything shares the machine's cores, as replicas on one host
would. During each round the CPU of the hubs, Postgres, NATS and wrk is sampled (psutil), so the table says what
saturates. Ratios are against the first 1-process round of the same run. With --write the table goes into
docs/scaling.md between its markers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import asyncpg
import psutil

from letsbe_platform.testing import free_port

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
sys.path.insert(0, str(BENCH))
import agents_sim  # noqa: E402
from heartbeat_load import ADMIN, wait_http  # noqa: E402

DOC = REPO / "docs/scaling.md"
START, END = "<!-- scaling-bench:start -->", "<!-- scaling-bench:end -->"
ROUNDS = (1, 2, 4, 1)


def wrk(url: str, connections: int, seconds: int, keys: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(BENCH / "heartbeat_load.lua"), url],
        env={**os.environ, "HB_KEYS": str(keys)},
        stdout=subprocess.PIPE,
        text=True,
    )


def parse(out: str) -> dict[str, float]:
    m = re.search(r"RESULT rps=([\d.]+) p50_us=(\d+) p99_us=(\d+) errors=(\d+) non2xx=(\d+)", out)
    assert m, out
    return {"rps": float(m[1]), "p50_ms": int(m[2]) / 1000, "p99_ms": int(m[3]) / 1000, "errors": int(m[4]) + int(m[5])}


def server_pids(port: int) -> list[psutil.Process]:
    """The process listening on ``port`` and its children (Postgres: the postmaster and every backend)."""
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            proc = psutil.Process(conn.pid)
            return [proc, *proc.children(recursive=True)]
    return []


class CpuSampler(threading.Thread):
    """Mean CPU (in cores) of each group of processes while it runs; Postgres backends are re-read each sample."""

    def __init__(self, groups: dict[str, callable]):
        super().__init__(daemon=True)
        self.groups = groups
        self.samples: dict[str, list[float]] = {g: [] for g in groups}
        self.stopping = threading.Event()

    def run(self) -> None:
        last: dict[int, float] = {}
        t_last = time.monotonic()
        while not self.stopping.wait(0.5):
            now = time.monotonic()
            for group, procs in self.groups.items():
                used = 0.0
                for p in procs():
                    try:
                        t = sum(p.cpu_times()[:2])
                    except psutil.Error:
                        continue
                    used += t - last.get(p.pid, t)
                    last[p.pid] = t
                self.samples[group].append(used / (now - t_last))
            t_last = now

    def result(self) -> dict[str, float]:
        self.stopping.set()
        self.join()
        return {g: round(sum(s[1:]) / max(len(s) - 1, 1), 2) for g, s in self.samples.items()}


async def connections(database_url: str) -> dict[str, int]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT coalesce(application_name, '') AS app, count(*) AS n FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() GROUP BY 1"
        )
        return {r["app"]: r["n"] for r in rows}
    finally:
        await conn.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true", help="write the table into docs/scaling.md")
    ap.add_argument("--agents", type=int, default=5_000)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--render", type=Path, help="only write docs/scaling.md from a previous run's JSON output")
    a = ap.parse_args()
    if a.render:
        write(json.loads(a.render.read_text()))
        return
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install -y wrk")
    if not (os.environ.get("DATABASE_URL") and os.environ.get("NATS_URL")):
        sys.exit("run under: .venv/bin/letsbe-devstack run -- …")
    import asyncio

    from letsbe_platform import migrations
    from letsbe_platform.db import plain_url

    database_url = plain_url(os.environ["DATABASE_URL"])
    migrations.upgrade(database_url)
    work = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    agents = asyncio.run(agents_sim.seed(database_url, a.agents, staging=0))
    keys = work / "keys.txt"
    keys.write_text("\n".join(x["api_key"] for x in agents))
    ports = [free_port() for _ in range(max(ROUNDS))]
    env = {
        "LETSBE_HUB_BOOTSTRAP_ADMIN_TOKEN": ADMIN,
        "LETSBE_HUB_LOG_LEVEL": "WARNING",
        "LETSBE_HUB_HEARTBEAT_INTERVAL_SECONDS": "60",
        "LETSBE_HUB_HEARTBEAT_MAX_PER_SECOND": "100000",
    }
    hubs = [
        subprocess.Popen(
            [sys.executable, "-m", "letsbe_hub"],
            env={**os.environ, **env, "LETSBE_HUB_PORT": str(port)},
            stdout=(work / f"hub-{i}.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        for i, port in enumerate(ports)
    ]
    pg_port = int(re.search(r":(\d+)/", database_url)[1])
    nats_port = int(os.environ["NATS_URL"].split(",")[0].rsplit(":", 1)[1])
    results: dict = {
        "cores": psutil.cpu_count(),
        "load_before": [round(x, 1) for x in os.getloadavg()],
        "agents": a.agents,
        "connections": a.connections,
        "seconds": a.seconds,
        "rounds": [],
    }
    try:
        for port in ports:
            wait_http(f"http://127.0.0.1:{port}/readyz", timeout=300)
        time.sleep(2)  # let every replica's workers settle (leases taken, pools warm) before the idle count
        results["pg_connections_idle"] = asyncio.run(connections(database_url))
        hub_procs = [psutil.Process(h.pid) for h in hubs]
        wrk_procs: list[psutil.Process] = []
        for n in ROUNDS:
            sampler = CpuSampler(
                {
                    "hubs": lambda: hub_procs,
                    "postgres": lambda: server_pids(pg_port),
                    "nats": lambda: server_pids(nats_port),
                    "wrk": lambda: wrk_procs,
                }
            )
            loads = [
                wrk(f"http://127.0.0.1:{port}", max(a.connections // n, 1), a.seconds, keys) for port in ports[:n]
            ]
            wrk_procs[:] = [psutil.Process(w.pid) for w in loads]
            sampler.start()
            outs = [parse(w.communicate()[0]) for w in loads]
            cpu = sampler.result()
            row = {
                "processes": n,
                "rps": round(sum(o["rps"] for o in outs), 1),
                "p50_ms": max(o["p50_ms"] for o in outs),
                "p99_ms": max(o["p99_ms"] for o in outs),
                "errors": sum(o["errors"] for o in outs),
                "cpu_cores": cpu,
                "load": round(os.getloadavg()[0], 1),
            }
            results["rounds"].append(row)
            print(json.dumps(row), file=sys.stderr)
        results["pg_connections_loaded"] = asyncio.run(connections(database_url))
    finally:
        for h in hubs:
            h.terminate()
        for h in hubs:
            try:
                h.wait(timeout=30)
            except subprocess.TimeoutExpired:
                h.kill()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))
    if a.write:
        write(results)


def write(r: dict) -> None:
    base = r["rounds"][0]["rps"]
    lines = [
        START,
        f"Measured by `bench/scaling.py` on {r['cores']} cores (1-minute load average "
        f"{r['load_before'][0]} before the run, per round below): {r['agents']:,} seeded agents, {r['connections']} "
        f"wrk connections in all, split over the loaded processes, {r['seconds']} s per round, nothing pinned. "
        "CPU is in cores (2.0 = the whole machine), sampled during each round.",
        "",
        "| hub processes | heartbeats/s | vs 1 process | p50 ms | p99 ms | errors | CPU hubs | CPU Postgres "
        "| CPU NATS | CPU wrk | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rounds"]:
        c = row["cpu_cores"]
        lines.append(
            f"| {row['processes']} | {row['rps']:,.0f} | {row['rps'] / base:.2f}× | {row['p50_ms']:.1f} | "
            f"{row['p99_ms']:.1f} | {row['errors']} | {c['hubs']} | {c['postgres']} | {c['nats']} | {c['wrk']} | "
            f"{row['load']} |"
        )
    def by_app(counts: dict[str, int]) -> str:
        return ", ".join(f"`{k or '(unnamed)'}` {v}" for k, v in sorted(counts.items()))

    lines += [
        "",
        f"Postgres connections with {max(ROUNDS)} idle hub processes, by application_name: "
        f"{by_app(r['pg_connections_idle'])}; after the rounds: {by_app(r['pg_connections_loaded'])}.",
        END,
    ]
    text = DOC.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    DOC.write_text(head + "\n".join(lines) + tail)


if __name__ == "__main__":
    main()
