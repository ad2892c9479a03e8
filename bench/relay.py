"""Chat relay benchmark: N concurrent customer sessions relayed through one hub process, against a bare WebSocket
echo server on the same machine, measured in the same run.

    .venv/bin/letsbe-devstack run -- .venv/bin/python bench/relay.py [--write] [--sessions 1,50] [--seconds 15]

Relay: N tenants, each with one customer session on ``/api/v1/customer/ws`` (an app token) and its agent's
connection on ``/api/v1/tenant/relay/ws`` (a registered Safety Wrapper credential), all real WebSocket clients (the
``websockets`` library) in this process. Each customer sends a 256-byte message, waits for the agent's answer (the
agent echoes it at once), acknowledges it and sends the next: one round trip is customer → hub → JetStream → hub →
agent → hub → JetStream → hub → customer, two relayed (stored) messages. Baseline: a bare ``websockets`` echo server
in its own process, N clients doing the same closed loop (one hop, nothing stored). Reported: round trips per
second (relayed messages are twice that) and p50/p99 of the round trip as the customer sees it.

The load generator (customers and agents, Python) shares the machine with the hub, Postgres and NATS: at high N it
is a bottleneck of its own, which the baseline has too (its clients are the same code).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from websockets.asyncio.client import ClientConnection, connect

from letsbe_platform.testing import free_port

sys.path.insert(0, str(Path(__file__).parent))
from agent_memory import write  # the marker-delimited section writer of docs/benchmarks.md

ADMIN = "lbh_bench-relay-admin-token-0123456789"
TEXT = "x" * 256


def echo_server(port: int) -> None:
    """Child mode: the baseline, a bare websockets echo server."""
    from websockets.asyncio.server import serve

    async def echo(ws) -> None:  # type: ignore[no-untyped-def]
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        async with serve(echo, "127.0.0.1", port, max_size=2**20) as server:
            await server.serve_forever()

    asyncio.run(main())


async def closed_loop(send_recv, until: float, latencies: list[float]) -> int:  # type: ignore[no-untyped-def]
    n = 0
    while time.perf_counter() < until:
        t0 = time.perf_counter()
        await send_recv(n)
        latencies.append(time.perf_counter() - t0)
        n += 1
    return n


def summary(latencies: list[float], seconds: float, warm: int) -> dict:
    kept = sorted(latencies[warm:]) or [0.0]
    return {"round_trips_per_s": round(len(latencies) / seconds, 1),
            "p50_ms": round(1000 * statistics.median(kept), 2),
            "p99_ms": round(1000 * kept[min(len(kept) - 1, int(0.99 * len(kept)))], 2)}


async def baseline(port: int, sessions: int, seconds: float) -> dict:
    conns = [await connect(f"ws://127.0.0.1:{port}") for _ in range(sessions)]
    latencies: list[float] = []

    def pinger(ws: ClientConnection):  # type: ignore[no-untyped-def]
        async def send_recv(n: int) -> None:
            await ws.send(json.dumps({"type": "message", "id": f"m{n}", "text": TEXT}))
            await ws.recv()
        return send_recv

    until = time.perf_counter() + seconds
    await asyncio.gather(*(closed_loop(pinger(ws), until, latencies) for ws in conns))
    for ws in conns:
        await ws.close()
    return summary(latencies, seconds, warm=sessions)


async def tenant(admin: httpx.AsyncClient) -> tuple[str, str]:
    tenant_id = uuid.uuid4()
    r = await admin.post(f"/api/v1/admin/tenants/{tenant_id}/registration-tokens", json={
        "domain": f"b{tenant_id.hex[:10]}.example.com", "order_id": str(tenant_id), "tier": "build", "region": "eu"})
    r.raise_for_status()
    r = await admin.post("/api/v1/tenant/register", json={
        "registration_token": r.json()["token"], "agent": "safety-wrapper", "version": "1.0.0", "hostname": "b"})
    r.raise_for_status()
    agent_key = r.json()["api_key"]
    r = await admin.post(f"/api/v1/admin/tenants/{tenant_id}/customer-app-tokens", json={"label": "bench"})
    r.raise_for_status()
    return agent_key, r.json()["token"]


async def open_relay(url: str, token: str, after: int | None) -> ClientConnection:
    ws = await connect(url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=2**20)
    await ws.send(json.dumps({"type": "hello", "after": after}))
    assert json.loads(await ws.recv())["type"] == "ready"
    return ws


async def echo_agent(ws: ClientConnection) -> None:
    async for raw in ws:
        f = json.loads(raw)
        if f["type"] == "message":
            await ws.send(json.dumps({"type": "message", "id": f"a{f['id']}", "text": f["text"],
                                      "reply_to": f["id"]}))
            await ws.send(json.dumps({"type": "ack", "id": f["id"]}))


async def relay(hub: str, keys: list[tuple[str, str]], seconds: float) -> dict:
    base = hub.replace("http://", "ws://")
    agents = [await open_relay(base + "/api/v1/tenant/relay/ws", k, 0) for k, _ in keys]
    echoing = [asyncio.create_task(echo_agent(ws)) for ws in agents]
    customers = [await open_relay(base + "/api/v1/customer/ws", t, None) for _, t in keys]
    latencies: list[float] = []

    def chatter(ws: ClientConnection, session: int):  # type: ignore[no-untyped-def]
        async def send_recv(n: int) -> None:
            await ws.send(json.dumps({"type": "message", "id": f"s{session}-{n}-{uuid.uuid4().hex[:6]}",
                                      "text": TEXT}))
            while True:  # "accepted" comes first, then the answer
                f = json.loads(await ws.recv())
                if f["type"] == "message":
                    await ws.send(json.dumps({"type": "ack", "id": f["id"]}))
                    return
        return send_recv

    until = time.perf_counter() + seconds
    await asyncio.gather(*(closed_loop(chatter(ws, i), until, latencies) for i, ws in enumerate(customers)))
    for t in echoing:
        t.cancel()
    for ws in [*customers, *agents]:
        await ws.close()
    return summary(latencies, seconds, warm=len(keys))


async def run(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    hub_port, echo_port = free_port(), free_port()
    env = {**os.environ, "LETSBE_HUB_PORT": str(hub_port), "LETSBE_HUB_BOOTSTRAP_ADMIN_TOKEN": ADMIN,
           "LETSBE_HUB_LOG_LEVEL": "WARNING", "LETSBE_BUS_NAMESPACE": f"relaybench{uuid.uuid4().hex[:6]}"}
    hub_proc = subprocess.Popen([sys.executable, "-m", "letsbe_hub"], env=env,
                                stdout=(work / "hub.log").open("ab"), stderr=subprocess.STDOUT)
    echo_proc = subprocess.Popen([sys.executable, __file__, "--echo-server", str(echo_port)])
    hub = f"http://127.0.0.1:{hub_port}"
    rows = []
    try:
        async with httpx.AsyncClient(base_url=hub, headers={"Authorization": f"Bearer {ADMIN}"},
                                     timeout=30) as admin:
            for _ in range(600):
                try:
                    if (await admin.get("/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            keys = [await tenant(admin) for _ in range(max(args.sessions))]
        for n in args.sessions:  # alternate, the same load for both
            rows.append({"sessions": n, "baseline": await baseline(echo_port, n, args.seconds),
                         "relay": await relay(hub, keys[:n], args.seconds)})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        for p in (hub_proc, echo_proc):
            p.terminate()
            p.wait(30)
    return {"rows": rows, "seconds": args.seconds, "loadavg": [round(x, 2) for x in os.getloadavg()],
            "cpus": os.cpu_count()}


def report(r: dict) -> str:
    lines = [
        "<!-- relay-bench:start -->",
        f"## Chat relay: customer sessions through one hub process ({time.strftime('%Y-%m-%d')}, `bench/relay.py`)",
        "",
        "N tenants, each with one customer session and its agent's connection, real WebSocket clients in one "
        "process; each customer sends a 256-byte message, waits for the agent's (immediate) echo, acknowledges it, "
        "sends the next. A round trip is two relayed messages, each stored in JetStream before it is accepted and "
        "read back from it (customer → hub → JetStream → hub → agent and back). Baseline: a bare `websockets` echo "
        "server on the same machine, the same clients and loop, in the same run (one hop, nothing stored). "
        f"{r['seconds']:g} s per measurement. **The machine was shared with other work and loaded** ({r['cpus']} "
        f"cores, load average {r['loadavg']} at the end): absolute figures are low and noisy, the ratio is the "
        "useful part.",
        "",
        "| sessions | relay round trips/s (relayed msgs/s) | relay p50 / p99 | echo baseline round trips/s | "
        "baseline p50 / p99 | relay vs baseline (throughput) |",
        "|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        rel, base = row["relay"], row["baseline"]
        lines.append(
            f"| {row['sessions']} | {rel['round_trips_per_s']} ({2 * rel['round_trips_per_s']:.0f}) "
            f"| {rel['p50_ms']} / {rel['p99_ms']} ms | {base['round_trips_per_s']} "
            f"| {base['p50_ms']} / {base['p99_ms']} ms "
            f"| {rel['round_trips_per_s'] / (base['round_trips_per_s'] or 1):.2f}x |")
    lines.append("<!-- relay-bench:end -->")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--sessions", type=lambda s: [int(x) for x in s.split(",")], default=[1, 50])
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--echo-server", type=int)
    a = ap.parse_args()
    if a.echo_server:
        echo_server(a.echo_server)
        return
    if not (os.environ.get("DATABASE_URL") and os.environ.get("NATS_URL")):
        sys.exit("run under: .venv/bin/letsbe-devstack run -- …")
    from letsbe_platform import migrations

    migrations.upgrade(os.environ["DATABASE_URL"])
    result = asyncio.run(run(a))
    print(json.dumps(result, indent=2))
    text = report(result)
    print(text)
    if a.write:
        write(text)


if __name__ == "__main__":
    main()
