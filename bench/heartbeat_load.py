"""Agents benchmark: heartbeat throughput and latency of one hub process, and the time to roll a release.

    apt-get install -y wrk     # the load generator (Debian package)
    .venv/bin/letsbe-devstack run -- .venv/bin/python bench/heartbeat_load.py [--write] [--sim-seconds 90]

On the 2-core reference machine the hub process (and, in its turn, the baseline) is pinned to core 0 with taskset;
Postgres, NATS, wrk and the agent simulator share core 1. So "per hub process" is "per core".

1. Rollout: 200 agents registered through the API (one staging), simulated agents long-polling for commands; a
   rollout of one component through staging → 5 % → 25 % → approval → 100 % with every soak shortened to 2 s.
2. Fleet: 10,000 agents (the 200 plus 9,800 seeded straight into the hub schema) heartbeating at the interval the
   hub hands out (60 s, first beats spread over one interval) for --sim-seconds: rate and p50/p99 as the agents see it.
3. Capacity: wrk with a Lua script (bench/heartbeat_load.lua: random agent of the 10,000, fresh seq each time)
   against the hub's heartbeat and against a bare FastAPI + asyncpg endpoint doing the same upsert
   (bench/heartbeat_baseline.py), at rising connection counts, alternating the two; the highest rate each holds
   with p99 under 50 ms, and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from letsbe_platform.testing import free_port

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
ADMIN = "lbh_bench-admin-token-000000000000000000000000"
HUB_CORE, LOAD_CORE = "0", "1"
START, END = "<!-- agents-heartbeat-bench:start -->", "<!-- agents-heartbeat-bench:end -->"

sys.path.insert(0, str(BENCH))
import agents_sim  # noqa: E402


def pin_servers_to_load_core() -> list[str]:
    """Postgres (postmaster and its backends) and NATS of *this* run (found by the ports in the URLs) → core 1."""
    ports = {
        int(re.search(r":(\d+)/", os.environ["DATABASE_URL"]).group(1)),
        int(os.environ["NATS_URL"].rsplit(":", 1)[1]),
    }
    pinned = []
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port in ports and conn.pid:
            proc = psutil.Process(conn.pid)
            for p in [proc, *proc.children(recursive=True)]:
                try:
                    p.cpu_affinity([int(LOAD_CORE)])
                    pinned.append(f"{p.name()}:{p.pid}")
                except psutil.Error:
                    pass
    return sorted(set(pinned))


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        ["taskset", "-c", HUB_CORE, *cmd], env={**os.environ, **env}, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


def wrk(url: str, connections: int, seconds: int, keys: Path) -> dict[str, float]:
    out = subprocess.run(
        ["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s",
         str(BENCH / "heartbeat_load.lua"), url],
        env={**os.environ, "HB_KEYS": str(keys)}, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    m = re.search(r"RESULT rps=([\d.]+) p50_us=(\d+) p99_us=(\d+) errors=(\d+) non2xx=(\d+)", out)
    assert m, out
    return {
        "connections": connections,
        "rps": float(m.group(1)),
        "p50_ms": int(m.group(2)) / 1000,
        "p99_ms": int(m.group(3)) / 1000,
        "errors": int(m.group(4)) + int(m.group(5)),
    }


def server_histogram(url: str) -> dict[float, float]:
    """The hub's own latency histogram of the heartbeat route (cumulative counts by bucket upper bound)."""
    text = httpx.get(url + "/metrics", timeout=10).text
    out: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("http_request_duration_seconds_bucket{") and 'route="/api/v1/tenant/heartbeat"' in line:
            if 'status="200"' in line and 'method="POST"' in line:
                le = float(re.search(r'le="([^"]+)"', line).group(1))
                out[le] = out.get(le, 0) + float(line.rsplit(" ", 1)[1])
    return out


def histogram_summary(before: dict[float, float], after: dict[float, float]) -> dict[str, float | str]:
    """Server-side view: share of heartbeats answered within 50 ms, and the bucket holding the 50th/99th percentile."""
    diff = {le: after.get(le, 0) - before.get(le, 0) for le in after}
    total = diff.get(float("inf"), 0)
    if not total:
        return {"count": 0}

    def bucket(q: float) -> str:
        for le in sorted(diff):
            if diff[le] >= q * total:
                return f"≤ {le * 1000:g} ms" if le != float("inf") else "> largest bucket"
        return "?"

    within = round(diff.get(0.05, 0) / total * 100, 3)
    return {"count": int(total), "within_50ms_pct": within, "p50": bucket(0.5), "p99": bucket(0.99)}


def best_under(rows: list[dict[str, float]], limit_ms: float = 50) -> dict[str, float] | None:
    ok = [r for r in rows if r["p99_ms"] < limit_ms and r["errors"] == 0]
    return max(ok, key=lambda r: r["rps"]) if ok else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help="write the results into docs/benchmarks.md")
    ap.add_argument("--agents", type=int, default=10_000)
    ap.add_argument("--rollout-tenants", type=int, default=200)
    ap.add_argument("--sim-seconds", type=float, default=90)
    ap.add_argument("--wrk-seconds", type=int, default=8)
    ap.add_argument("--levels", default="2,4,8,16,32,64,128")
    ap.add_argument("--render", type=Path, help="only write docs/benchmarks.md from a previous run's JSON output")
    a = ap.parse_args()
    if a.render:
        write(json.loads(a.render.read_text()), a)
        return
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install -y wrk")
    if not (os.environ.get("DATABASE_URL") and os.environ.get("NATS_URL")):
        sys.exit("run under: .venv/bin/letsbe-devstack run -- …")

    from letsbe_platform import migrations

    migrations.upgrade(os.environ["DATABASE_URL"])
    pinned = pin_servers_to_load_core()
    work = Path(tempfile.mkdtemp(prefix="hb-bench-"))
    hub_port, base_port = free_port(), free_port()
    hub_url, base_url = f"http://127.0.0.1:{hub_port}", f"http://127.0.0.1:{base_port}"
    env = {
        "LETSBE_HUB_PORT": str(hub_port),
        "LETSBE_HUB_BOOTSTRAP_ADMIN_TOKEN": ADMIN,
        "LETSBE_HUB_LOG_LEVEL": "WARNING",
        "LETSBE_HUB_HEARTBEAT_INTERVAL_SECONDS": "60",
        "LETSBE_HUB_HEARTBEAT_MAX_PER_SECOND": "100000",
        "LETSBE_HUB_ROLLOUT_TICK_SECONDS": "0.5",
    }
    procs = [start([sys.executable, "-m", "letsbe_hub"], env, work / "hub.log")]
    procs.append(
        start([sys.executable, str(BENCH / "heartbeat_baseline.py"), "--port", str(base_port)], {}, work / "base.log")
    )
    results: dict = {"pinned_to_core_1": pinned}
    try:
        wait_http(hub_url + "/readyz")
        wait_http(base_url + "/docs")
        print("servers up; pinned to core 1:", ", ".join(pinned), file=sys.stderr)

        # 1. rollout across registered agents
        agents = asyncio.run(agents_sim.register(hub_url, ADMIN, a.rollout_tenants, staging=1))
        results["rollout"] = asyncio.run(
            agents_sim.rollout(hub_url, ADMIN, agents, soak=2, concurrency=20, update_seconds=0.5)
        )
        print("rollout:", json.dumps(results["rollout"]), file=sys.stderr)

        # 2. the fleet at its interval
        agents += asyncio.run(agents_sim.seed(os.environ["DATABASE_URL"], a.agents - len(agents), staging=0))
        agents_file = work / "agents.json"
        agents_file.write_text(json.dumps(agents))
        before = server_histogram(hub_url)
        sim = subprocess.run(
            ["taskset", "-c", LOAD_CORE, sys.executable, str(BENCH / "agents_sim.py"), "heartbeat", "--hub", hub_url,
             "--agents", str(agents_file), "-n", "0", "--duration", str(a.sim_seconds)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        results["fleet"] = json.loads(sim.stdout.strip().splitlines()[-1])
        results["fleet"]["server"] = histogram_summary(before, server_histogram(hub_url))
        print("fleet:", json.dumps(results["fleet"]), file=sys.stderr)

        # 3. capacity: hub vs baseline, alternating
        keys = work / "keys.txt"
        keys.write_text("\n".join(x["api_key"] for x in agents))
        rows: dict[str, list] = {"hub": [], "baseline": []}
        for c in map(int, a.levels.split(",")):
            for side, url in (("hub", hub_url), ("baseline", base_url)):
                r = wrk(url, c, a.wrk_seconds, keys)
                rows[side].append(r)
                print(side, json.dumps(r), file=sys.stderr)
        results["capacity"] = rows
        results["best"] = {side: best_under(r) for side, r in rows.items()}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    print(json.dumps(results, indent=2))
    if a.write:
        write(results, a)


def write(r: dict, a: argparse.Namespace) -> None:
    ro, fl, best = r["rollout"], r["fleet"], r["best"]
    hub, base = best["hub"], best["baseline"]
    ratio = f"{hub['rps'] / base['rps']:.2f}x" if hub and base else "n/a"
    lines = [
        START,
        "## Tenant agents: heartbeat throughput per hub process, fleet at 60 s, rollout time "
        "(`bench/heartbeat_load.py`)",
        "",
        "Run: `apt-get install -y wrk; .venv/bin/letsbe-devstack run -- .venv/bin/python bench/heartbeat_load.py "
        "--write`. The hub process (one uvicorn worker) and, in its turn, the baseline run pinned to **core 0** "
        "(`taskset -c 0`); Postgres 16, NATS, wrk and the agent simulator share **core 1**. Each heartbeat is the full "
        "hub path: credential check, liveness upsert and the pending-commands check (batched with concurrent beats "
        "into one statement), and a tenant-heartbeat published to NATS. The baseline is a bare FastAPI + asyncpg "
        "endpoint doing only the same upsert, one statement per request (`bench/heartbeat_baseline.py`).",
        "",
        f"**Fleet of {fl['agents']:,} simulated agents** at the interval the hub hands out ({fl['interval_s']} s, "
        f"first beats spread over one interval), {fl['duration_s']} s (`bench/agents_sim.py heartbeat`):",
        "",
        "| agents | heartbeats/s | p50 | p99 | max | errors |",
        "|---|---|---|---|---|---|",
        f"| {fl['agents']:,} | {fl['rate_per_s']} | {fl['p50_ms']} ms | {fl['p99_ms']} ms | {fl['max_ms']} ms "
        f"| {fl['errors']} |",
        "",
        f"The hub's own latency histogram for the same heartbeats (`http_request_duration_seconds`, route "
        f"/api/v1/tenant/heartbeat): {fl['server'].get('count', 0):,} heartbeats, "
        f"{fl['server'].get('within_50ms_pct')} % answered within 50 ms, p50 {fl['server'].get('p50')}, "
        f"p99 {fl['server'].get('p99')}. The simulator shares core 1 with Postgres and NATS, so its figures include "
        "its own scheduling delays.",
        "",
        f"**Capacity** (wrk, 1 thread, {a.wrk_seconds} s per level, random agent of {a.agents:,} per request, hub and "
        "baseline alternating at each level):",
        "",
        "| connections | hub req/s | hub p50 | hub p99 | baseline req/s | baseline p50 | baseline p99 |",
        "|---|---|---|---|---|---|---|",
    ]
    for h, b in zip(r["capacity"]["hub"], r["capacity"]["baseline"], strict=True):
        lines.append(
            f"| {h['connections']} | {h['rps']:.0f} | {h['p50_ms']:.1f} ms | {h['p99_ms']:.1f} ms | "
            f"{b['rps']:.0f} | {b['p50_ms']:.1f} ms | {b['p99_ms']:.1f} ms |"
        )
    fmt = lambda x: f"{x['rps']:.0f}/s (p99 {x['p99_ms']:.1f} ms, {x['connections']} connections)" if x else "none"  # noqa: E731
    lines += [
        "",
        f"Highest rate held at p99 < 50 ms: **hub {fmt(hub)}**, baseline {fmt(base)}; ratio hub/baseline **{ratio}**.",
        "",
        f"**Rollout** of one component across {ro['tenants']} simulated tenants (`bench/agents_sim.py rollout`): "
        "stages "
        f"{ro['stages']}, every soak shortened to {ro['soak_s']} s, concurrency {ro['concurrency']} per stage, each "
        f"simulated update taking {ro['update_s']} s, commands received by long-poll, approval before 100 % given "
        f"at once: **{ro['status']} in {ro['seconds']} s** ({ro['updates_run']} updates; stage start times "
        f"{ro['stage_started_at_s']}).",
        "",
        "What the hub's heartbeat path does to get there: concurrent heartbeats are coalesced into one statement "
        "(credential check + liveness + pending commands for the whole batch), so at high concurrency the hub does "
        "fewer database round trips than the one-statement-per-request baseline and pulls ahead of it; the "
        "heartbeat is answered by an ASGI middleware before route matching (same validation and problem+json "
        "errors as the route); tenant-heartbeat events are handed to NATS in batches without waiting for acks; and "
        "the objects built at start-up are frozen out of the garbage collector (`gc.freeze()`), which removed "
        "~300 ms pauses that otherwise set the p99. The two cores are shared with whatever else runs on the machine "
        "(other test suites), so absolute figures move between runs; the same-run ratio moves less.",
        END,
    ]
    doc = REPO / "docs/benchmarks.md"
    text = doc.read_text()
    section = "\n".join(lines) + "\n"
    if START in text:
        text = text[: text.index(START)] + section + text[text.index(END) + len(END) + 1 :]
    else:
        text = text.rstrip("\n") + "\n\n\n" + section
    doc.write_text(text)


if __name__ == "__main__":
    main()
