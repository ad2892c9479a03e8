"""Secrets Proxy benchmark: the latency the proxy adds to an LLM call, and its redaction throughput.

    .venv/bin/python bench/secrets_proxy.py [--write] [--requests 1000]

Three processes: the fake OpenAI upstream (letsbe_fakes.openai, uvicorn) and the proxy (``python -m
letsbe_secrets_proxy``, its registry holding 1,000 secrets) are each pinned to a core; this process is the client.
For 4 KB and 64 KB chat bodies (ordinary text, clean or with a few registered secrets in it) it sends the same requests
alternately straight to the upstream (the baseline) and through the proxy, one at a time, and reports p50/p99 of
both, the difference (the added latency) and the ratio. Streaming: time to the first byte of the answer, direct
against proxied. Redaction throughput (MB/s) is measured in this process on the same bodies.
With --write the results are appended to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SENTINEL = "lbsp-bench-sentinel"
N_SECRETS = 1000


def serve_upstream() -> None:
    """Child mode: the fake upstream on a free port; prints the port, serves until stdin closes."""
    import threading

    import uvicorn

    from letsbe_fakes.openai import FakeOpenAI
    from letsbe_platform.testing import free_port

    fake = FakeOpenAI()
    fake.record_bodies = False
    fake.reply = "ok"
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(fake.app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="off"))
    threading.Thread(target=lambda: (sys.stdin.read(), setattr(server, "should_exit", True)), daemon=True).start()
    print(json.dumps({"port": port, "api_key": fake.api_key}), flush=True)
    server.run()


def make_secrets(rng: random.Random) -> dict[str, str]:
    alphabet = string.ascii_letters + string.digits + "-_/+!@"
    return {f"secret_{i:04d}": "".join(rng.choices(alphabet, k=rng.randint(12, 48))) for i in range(N_SECRETS)}


def make_body(size: int, secrets: dict[str, str], rng: random.Random, leaks: int = 0) -> dict:
    """A chat body of about ``size`` bytes of ordinary text, with ``leaks`` registered secrets spread in it."""
    words = ["the", "customer", "asked", "about", "invoice", "number", "and", "the", "delivery", "date", "of",
             "order", "please", "check", "nextcloud", "folder", "report", "meeting", "tomorrow", "at", "ten"]
    values = list(secrets.values())
    text: list[str] = []
    length = 0
    while length < size:
        text.append(rng.choice(words))
        length += len(text[-1]) + 1
    for _ in range(leaks):
        text.insert(rng.randrange(len(text)), rng.choice(values))
    content = " ".join(text)[:size]
    return {"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "You are the tenant's assistant."},
        {"role": "user", "content": content[: size // 2]},
        {"role": "tool", "tool_call_id": "call_1", "content": json.dumps({"result": content[size // 2:]})},
    ]}


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


async def measure(args: argparse.Namespace) -> dict:
    import httpx
    import psutil
    from cryptography.fernet import Fernet

    from letsbe_platform.testing import free_port
    from letsbe_secrets_proxy.proxy.redact import Redactor, StreamRedactor
    from letsbe_secrets_proxy.proxy.registry import write_store
    from letsbe_secrets_proxy.proxy.walk import redact_json

    rng = random.Random(42)
    secrets = make_secrets(rng)
    tmp = Path(tempfile.mkdtemp(prefix="sp-bench-"))
    key = Fernet.generate_key().decode()
    write_store(tmp / "secrets.enc", key, secrets)
    cores = sorted(os.sched_getaffinity(0))
    up_core, proxy_core = cores[0], cores[-1]

    upstream = subprocess.Popen(["taskset", "-c", str(up_core), sys.executable, __file__, "--serve-upstream"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    info = json.loads(upstream.stdout.readline())
    port = free_port()
    env = {**os.environ, "LETSBE_SP_PORT": str(port), "LETSBE_SP_SENTINEL_KEY": SENTINEL,
           "LETSBE_SP_UPSTREAM_BASE_URL": f"http://127.0.0.1:{info['port']}/v1",
           "LETSBE_SP_UPSTREAM_API_KEY": info["api_key"], "LETSBE_SP_SECRETS_PATH": str(tmp / "secrets.enc"),
           "LETSBE_SP_SECRETS_KEY": key, "LETSBE_SP_USAGE_LEDGER_PATH": str(tmp / "usage.sqlite3"),
           "LETSBE_SP_LOG_LEVEL": "WARNING"}
    proxy = subprocess.Popen(["taskset", "-c", str(proxy_core), sys.executable, "-m", "letsbe_secrets_proxy"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.sched_setaffinity(0, {up_core})
    results: dict = {"requests": args.requests, "secrets": N_SECRETS, "cores": {"upstream+client": up_core,
                                                                               "proxy": proxy_core}}
    try:
        direct_url = f"http://127.0.0.1:{info['port']}/v1/chat/completions"
        proxy_url = f"http://127.0.0.1:{port}/v1/chat/completions"
        async with httpx.AsyncClient(timeout=30) as client:
            for _ in range(100):
                try:
                    if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            direct_h = {"Authorization": f"Bearer {info['api_key']}", "content-type": "application/json"}
            proxy_h = {"Authorization": f"Bearer {SENTINEL}", "content-type": "application/json"}
            proc, up_proc = psutil.Process(proxy.pid), psutil.Process(upstream.pid)
            results["loadavg_before"] = [round(x, 2) for x in os.getloadavg()]
            for size, leaks in args.cases:
                raw = json.dumps(make_body(size, secrets, rng, leaks)).encode()
                times: dict[str, list[float]] = {"direct": [], "proxied": []}
                cpu0, up0 = sum(proc.cpu_times()[:2]), sum(up_proc.cpu_times()[:2])
                for i in range(args.requests + 50):
                    order = [("direct", direct_url, direct_h), ("proxied", proxy_url, proxy_h)]
                    for name, url, headers in order if i % 2 else reversed(order):
                        t = time.perf_counter()
                        r = await client.post(url, content=raw, headers=headers)
                        elapsed = time.perf_counter() - t
                        assert r.status_code == 200, r.text
                        if i >= 50:  # warm-up
                            times[name].append(elapsed * 1000)
                # CPU the proxy process spent per request: what the proxy costs, whatever else the machine runs.
                # The upstream serves every request twice (direct and proxied): its CPU per request is the yardstick.
                n = args.requests + 50
                row: dict = {"proxy_cpu_ms": round((sum(proc.cpu_times()[:2]) - cpu0) * 1000 / n, 3),
                             "upstream_cpu_ms": round((sum(up_proc.cpu_times()[:2]) - up0) * 1000 / (2 * n), 3)}
                for q in (50, 99):
                    d, p = pct(times["direct"], q), pct(times["proxied"], q)
                    row[f"p{q}"] = {"direct_ms": round(d, 3), "proxied_ms": round(p, 3), "added_ms": round(p - d, 3),
                                    "ratio": round(p / d, 2)}
                results[f"{size // 1024}KB, {leaks} secrets in it"] = row

            # Streaming: time to the first byte of the answer.
            stream_body = json.dumps({"model": "m", "stream": True, "messages": [
                {"role": "user", "content": "hello " * 700}]}).encode()
            ttfb: dict[str, list[float]] = {"direct": [], "proxied": []}
            for i in range(args.requests // 2 + 20):
                for name, url, headers in (("direct", direct_url, direct_h), ("proxied", proxy_url, proxy_h)):
                    t = time.perf_counter()
                    async with client.stream("POST", url, content=stream_body, headers=headers) as r:
                        async for _ in r.aiter_raw():
                            if i >= 20:
                                ttfb[name].append((time.perf_counter() - t) * 1000)
                            break
            results["stream_ttfb"] = {f"p{q}": {"direct_ms": round(pct(ttfb["direct"], q), 3),
                                                 "proxied_ms": round(pct(ttfb["proxied"], q), 3),
                                                 "added_ms": round(pct(ttfb["proxied"], q) - pct(ttfb["direct"], q),
                                                                   3)} for q in (50, 99)}
        results["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        proxy.terminate()
        upstream.stdin.close()
        proxy.wait(10)
        upstream.wait(10)

    # Redaction throughput, in this process.
    t0 = time.perf_counter()
    redactor = Redactor(secrets)
    results["build_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    body = make_body(64 * 1024, secrets, rng, 10)
    text = body["messages"][1]["content"] + body["messages"][2]["content"]
    rounds = 200
    t0 = time.perf_counter()
    for _ in range(rounds):
        redactor.redact(text)
    text_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(rounds):
        redact_json(body, redactor, [])
    json_s = time.perf_counter() - t0
    pieces = [text[i:i + 20] for i in range(0, len(text), 20)]  # ~ one streamed token-group per chunk
    t0 = time.perf_counter()
    for _ in range(20):
        s = StreamRedactor(redactor)
        for p in pieces:
            s.feed(p)
        s.flush()
    stream_s = time.perf_counter() - t0
    mb = len(text.encode()) / 1e6
    results["redaction_mb_s"] = {"text": round(mb * rounds / text_s, 1), "json_body": round(mb * rounds / json_s, 1),
                                 "stream_20B_chunks": round(mb * 20 / stream_s, 1)}
    return results


def report(r: dict) -> str:
    lines = [
        "",
        f"## Secrets Proxy ({time.strftime('%Y-%m-%d')}, `bench/secrets_proxy.py`)",
        "",
        f"{r['requests']} sequential requests per size and path, {r['secrets']} registered secrets "
        f"(~{r['secrets'] * 20:,} automaton entries with their encoded forms; built in {r['build_ms']} ms). "
        f"Upstream and client on core {r['cores']['upstream+client']}, proxy on core {r['cores']['proxy']}. "
        "Baseline: the same request straight to the upstream, interleaved with the proxied one.",
        "",
        f"Load average (1/5/15 min) {r['loadavg_before']} before, {r['loadavg_after']} after: other work shared "
        "the machine, which shows in every p99. The proxy's own CPU time per request does not depend on that.",
        "",
        "| body | p50 direct | p50 proxied | p50 added | p50 ratio "
        "| p99 direct | p99 proxied | p99 added | p99 ratio | CPU / request: proxy (upstream) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size in [k for k in r if k.endswith("in it")]:
        a, b = r[size]["p50"], r[size]["p99"]
        lines.append(f"| {size} | {a['direct_ms']} ms | {a['proxied_ms']} ms | {a['added_ms']} ms | {a['ratio']}x "
                     f"| {b['direct_ms']} ms | {b['proxied_ms']} ms | {b['added_ms']} ms | {b['ratio']}x "
                     f"| {r[size]['proxy_cpu_ms']} ms ({r[size]['upstream_cpu_ms']} ms) |")
    t = r["stream_ttfb"]
    lines += [
        "",
        f"Streaming time to first byte: p50 {t['p50']['direct_ms']} → {t['p50']['proxied_ms']} ms "
        f"(+{t['p50']['added_ms']} ms), p99 {t['p99']['direct_ms']} → {t['p99']['proxied_ms']} ms "
        f"(+{t['p99']['added_ms']} ms).",
        "",
        f"Redaction throughput (one core, 1,000 secrets): plain text {r['redaction_mb_s']['text']} MB/s, "
        f"a whole chat body (JSON walk) {r['redaction_mb_s']['json_body']} MB/s, a stream in 20-byte chunks "
        f"{r['redaction_mb_s']['stream_20B_chunks']} MB/s.",
        "",
        "Target: under 2 ms added at p99 for 64 KB, time to first byte unchanged within 1 ms.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--cases", type=lambda v: [tuple(int(x) for x in c.split(":")) for c in v.split(",")],
                        default=[(4096, 0), (65536, 0), (4096, 3), (65536, 10)],
                        help="body size:secrets in it, comma-separated (default 4096:0,65536:0,4096:3,65536:10)")
    parser.add_argument("--serve-upstream", action="store_true", help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.serve_upstream:
        serve_upstream()
        return
    res = asyncio.run(measure(a))
    print(json.dumps(res, indent=2))
    text = report(res)
    print(text)
    if a.write:
        with open(REPO / "docs/benchmarks.md", "a") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
