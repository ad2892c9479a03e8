"""Tenant agents' memory: resident set after start-up, at steady state under load, and the peak, against a floor.

    .venv/bin/python bench/agent_memory.py [--write] [--seconds 30]

Each agent is started as its container starts it (``python -m letsbe_secrets_proxy`` / ``python -m
letsbe_safety_wrapper``) with a production-like environment: a hub to register with and heartbeat to (a loopback
stand-in that answers the tenant API, heartbeat interval 1 s), the tenant's secret store holding 1,000 secrets,
the usage ledger, bytecode compiled (the images compile it at build time) and ``SSL_CERT_DIR`` set as in the
images. The floor is a bare FastAPI + uvicorn + httpx app (``uvicorn.run(app)`` with its defaults) that passes the
same requests through with httpx and nothing else, measured in the same run under the same load.

Load, the proxy (as bench/secrets_proxy.py, but 4 clients at once): 64 KB chat bodies, clean and with 10
registered secrets in them, and streamed answers; then a burst of bodies at the configured cap (``--cap-phase``).
Load, the gate: tool calls through ``/api/v1/tools/execute`` by 4 clients: allowed calls with unique arguments (every
one a new rate-limiter key) whose tool answers 64 KB of JSON, gated calls that each ask the hub for an approval,
and one call repeated until the loop limit refuses it. RSS is sampled every 50 ms from /proc/<pid>/status; the
peak is the kernel's high-water mark (VmHWM). With --write the table goes into docs/benchmarks.md.
"""

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from secrets_proxy import make_body, make_secrets  # noqa: E402  (the proxy benchmark's bodies and secrets)

SENTINEL = "lbsp-bench-sentinel-0123456789"
TOOLS_TOKEN = "lbsw-bench-tools-token-0123456789"
TARGETS_MB = {"secrets-proxy": 56, "safety-wrapper": 96}
LIMITS_MB = {"secrets-proxy": 64, "safety-wrapper": 128}
POLICY = {
    "version": 1,
    "default_autonomy_level": 1,
    "autonomy_levels": {"1": {"name": "supervised", "execute": ["GREEN"]}},
    "approval_ttl_seconds": {"YELLOW": 600, "YELLOW_EXTERNAL": 600, "RED": 600, "CRITICAL_RED": 300},
    "default_limits": {"per_minute": 10_000, "loop_repeats": 20, "loop_window_seconds": 60},
    "tools": {"ghost": {"actions": {
        "posts.list": {"class": "GREEN", "http": {"method": "GET", "path": "/ghost/api/admin/posts/",
                                                 "headers": {"Authorization": "Ghost SECRET_REF(secret_0001)"}}},
        "posts.update": {"class": "YELLOW", "http": {"method": "PUT", "path": "/ghost/api/admin/posts/{id}/"}},
    }}},
    "escalations": [],
}


# --- child processes -------------------------------------------------------------------------------------------


def serve_world() -> None:
    """Child mode: the stand-in hub, the fake OpenAI upstream and a tool, each a loopback server; prints their
    ports and serves until stdin closes."""
    from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
    from fastapi.responses import JSONResponse

    from letsbe_fakes import LoopbackServer
    from letsbe_fakes.openai import FakeOpenAI

    hub = FastAPI()
    beats: dict[str, int] = {}
    keys: dict[str, str] = {}

    @hub.post("/api/v1/tenant/register")
    async def register(request: Request) -> JSONResponse:
        body = await request.json()
        key = f"lba_{uuid.uuid4().hex}"
        keys[key] = body["agent"]
        return JSONResponse({"agent_id": str(uuid.uuid4()), "tenant_id": str(uuid.uuid4()), "api_key": key,
                             "heartbeat_interval_seconds": 1}, status_code=201)

    @hub.post("/api/v1/tenant/heartbeat")
    async def heartbeat(request: Request) -> dict:
        agent = keys.get(request.headers.get("authorization", "").removeprefix("Bearer "), "?")
        beats[agent] = beats.get(agent, 0) + 1
        await request.body()
        return {"interval_seconds": 1, "commands": [], "details_wanted": False}

    @hub.get("/api/v1/tenant/commands")
    async def commands(wait: int = 0) -> dict:
        await asyncio.sleep(min(wait, 2))
        return {"commands": []}

    @hub.get("/beats")
    async def get_beats() -> dict:
        return beats | {"chat answers": chat["answers"]}

    chat = {"answers": 0, "seq": 0}

    @hub.websocket("/api/v1/tenant/relay/ws")
    async def relay(ws: WebSocket) -> None:
        """The chat relay's hub end: a 4 KB customer message, and the next one as soon as the last is acked."""
        await ws.accept()
        hello = await ws.receive_json()
        await ws.send_json({"type": "ready", "tenant_id": str(uuid.uuid4()), "after": hello.get("after"),
                            "max_message_bytes": 65536, "max_unacked": 256})
        text = "How many posts did I publish this week, and which got the most comments? " * 55

        async def customer_says() -> None:
            chat["seq"] += 1
            await ws.send_json({"type": "message", "id": chat["seq"], "text": text, "reply_to": None,
                                "sent_at": datetime.now(UTC).isoformat()})

        await customer_says()
        try:
            while True:
                frame = await ws.receive_json()
                if frame["type"] == "message":
                    chat["seq"] += 1
                    chat["answers"] += 1
                    await ws.send_json({"type": "accepted", "id": frame["id"], "seq": chat["seq"]})
                elif frame["type"] == "ack":
                    await customer_says()
        except WebSocketDisconnect:
            pass

    @hub.post("/api/v1/tenant/approvals", status_code=201)
    async def approval(request: Request) -> dict:
        body = await request.json()
        now = datetime.now(UTC)
        return {"id": str(uuid.uuid4()), "tenant_id": str(uuid.uuid4()), "tool": body["tool"],
                "action": body["action"], "risk_class": body["risk_class"], "args_hash": body["args_hash"],
                "status": "PENDING", "requested_at": now.isoformat(),
                "expires_at": (now + timedelta(seconds=body["ttl_seconds"])).isoformat()}

    @hub.api_route("/api/v1/tenant/{rest:path}", methods=["POST"])
    async def reports(rest: str, request: Request) -> dict:
        await request.body()
        return {"duplicate": False}

    tool = FastAPI()
    page = {"posts": [{"id": i, "title": f"post {i}", "html": "<p>" + "lorem ipsum " * 40 + "</p>"}
                      for i in range(120)]}  # ~64 KB of JSON

    @tool.api_route("/{path:path}", methods=["GET", "PUT", "POST"])
    async def tool_route(path: str) -> dict:
        return page

    upstream = FakeOpenAI()
    upstream.record_bodies = False
    upstream.reply = "ok " * 200
    with LoopbackServer(hub) as h, LoopbackServer(tool) as t, LoopbackServer(upstream.app) as u:
        print(json.dumps({"hub": h.port, "tool": t.port, "upstream": u.port, "api_key": upstream.api_key}),
              flush=True)
        sys.stdin.read()


def serve_floor(port: int, upstream: str, tool: str, lean: bool) -> None:
    """Child mode: the floor, a bare FastAPI + uvicorn + httpx pass-through (uvicorn's defaults); ``lean``: with
    what the agents do for their memory too (the same unused extras skipped, asyncio loop, no WebSocket stack)."""
    if lean:
        from letsbe_agent.entry import skip_unused_extras

        skip_unused_extras()
    import httpx
    import uvicorn
    from fastapi import FastAPI, Request, Response
    from fastapi.responses import StreamingResponse

    client = httpx.AsyncClient(timeout=60)
    app = FastAPI()

    @app.get("/readyz")
    async def readyz() -> dict:
        return {"status": "ok"}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await request.body()
        req = client.build_request("POST", upstream + "/v1/chat/completions", content=body,
                                   headers={"content-type": "application/json",
                                            "authorization": request.headers.get("x-upstream-key", "")})
        resp = await client.send(req, stream=True)
        if resp.headers.get("content-type", "").startswith("text/event-stream"):
            async def relay():
                async for chunk in resp.aiter_bytes():
                    yield chunk
                await resp.aclose()
            return StreamingResponse(relay(), media_type="text/event-stream")
        data = await resp.aread()
        return Response(data, status_code=resp.status_code, media_type="application/json")

    @app.post("/api/v1/tools/execute")
    async def execute(request: Request) -> Response:
        call = await request.json()
        resp = await client.get(tool + "/ghost/api/admin/posts/", params={"page": str(call["args"].get("page"))})
        return Response(resp.content, media_type="application/json")

    if not lean:
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
        return
    # uvicorn.run is what the lean agents' uvicorn lacks (its command line): the same, spelled out
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", loop="asyncio", ws="none")
    uvicorn.Server(config).run()


# --- measuring -------------------------------------------------------------------------------------------------


def status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(key + ":"))


class Sampler:
    def __init__(self, pid: int):
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            self.samples.append((time.monotonic(), status_kb(self.pid, "VmRSS")))
            await asyncio.sleep(0.05)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()

    def median_since(self, t0: float) -> float:
        return statistics.median(kb for t, kb in self.samples if t >= t0) / 1024


def agent_env(kind: str, port: int, home: Path, world: dict, store: Path, key: str, policy: Path,
              pycache: Path) -> dict:
    prefix = "LETSBE_SP_" if kind == "secrets-proxy" else "LETSBE_SW_"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LETSBE_", "PYTHONPROFILE"))}
    env |= {
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(pycache),
        "SSL_CERT_DIR": "/etc/ssl/certs",
        f"{prefix}HOST": "127.0.0.1", f"{prefix}PORT": str(port),
        f"{prefix}HUB_URL": f"http://127.0.0.1:{world['hub']}",
        f"{prefix}STATE_DIR": str(home / "agent"),
        f"{prefix}REGISTRATION_TOKEN": "lbr_bench-registration-token-0123456789",
        f"{prefix}SECRETS_PATH": str(store), f"{prefix}SECRETS_KEY": key,
        f"{prefix}USAGE_LEDGER_PATH": str(home.parent / "usage.sqlite3"),
        f"{prefix}DOCKER_SOCKET": str(home / "no-docker.sock"),
        f"{prefix}BACKUP_STATUS_PATH": str(home / "backup-status.json"),
        f"{prefix}BACKUP_LOCK_PATH": str(home / "backup.lock"),
    }
    if kind == "secrets-proxy":
        env |= {"LETSBE_SP_SENTINEL_KEY": SENTINEL, "LETSBE_SP_UPSTREAM_API_KEY": world["api_key"],
                "LETSBE_SP_UPSTREAM_BASE_URL": f"http://127.0.0.1:{world['upstream']}/v1"}
    else:
        env |= {"LETSBE_SW_TOOLS_TOKEN": TOOLS_TOKEN, "LETSBE_SW_TOOLS_POLICY_PATH": str(policy),
                "LETSBE_SW_TOOLS_DIR": str(home / "tools"),
                "LETSBE_SW_TOOL_PORTS": json.dumps({"ghost": world["tool"]}),
                # The chat relay: the stand-in hub sends customer messages, the fake model stands in for OpenClaw.
                "LETSBE_SW_CHAT_URL": f"http://127.0.0.1:{world['upstream']}/v1/chat/completions",
                "LETSBE_SW_CHAT_TOKEN": world["api_key"]}
    return env


async def proxy_load(client, url: str, headers: dict, bodies: list[bytes], stream_body: bytes, until: float) -> int:
    n = 0
    while time.monotonic() < until:
        for raw in bodies:
            r = await client.post(url + "/v1/chat/completions", content=raw, headers=headers)
            assert r.status_code == 200, r.text[:300]
            n += 1
        async with client.stream("POST", url + "/v1/chat/completions", content=stream_body, headers=headers) as r:
            assert r.status_code == 200
            async for _ in r.aiter_raw():
                pass
        n += 1
    return n


async def gate_load(client, url: str, headers: dict, worker: int, until: float) -> dict[int, int]:
    codes: dict[int, int] = {}
    i = 0
    while time.monotonic() < until:
        i += 1
        calls = [
            {"tool": "ghost", "action": "posts.list", "args": {"page": f"{worker}-{i}"}},
            {"tool": "ghost", "action": "posts.update", "args": {"id": f"{worker}-{i}", "html": "x" * 4096}},
            {"tool": "ghost", "action": "posts.list", "args": {"page": "same"}},  # until the loop limit says no
        ]
        for call in calls:
            r = await client.post(url + "/api/v1/tools/execute", json=call, headers=headers)
            codes[r.status_code] = codes.get(r.status_code, 0) + 1
            assert r.status_code in (200, 202, 429), r.text[:300]
    return codes


async def wait_ready(client, url: str, proc: subprocess.Popen, hub: str | None, agent: str | None) -> None:
    import httpx

    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):  # not up yet
            ready = (await client.get(url + "/readyz")).status_code == 200
            if ready and (hub is None or (await client.get(hub + "/beats")).json().get(agent, 0) >= 2):
                return
        await asyncio.sleep(0.1)
    raise TimeoutError(url)


async def measure_one(name: str, argv: list[str], env: dict, port: int, load, seconds: float,
                      hub: str | None = None, agent: str | None = None, extra=None, limit_mb: int = 0) -> dict:
    import httpx

    if limit_mb:
        from letsbe_sandbox.memlimit import spawn

        proc = spawn(argv, env=env, mem_limit_mb=limit_mb, log_path=Path(tempfile.mkdtemp()) / f"{name}.log")
    else:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=60) as client:
            await wait_ready(client, url, proc, hub, agent)
            await asyncio.sleep(2)  # a few heartbeats, the first details, the registry loaded
            start = status_kb(proc.pid, "VmRSS") / 1024
            sampler = Sampler(proc.pid)
            sampler.start()
            t0 = time.monotonic()
            until = t0 + seconds
            results = await asyncio.gather(*(load(client, url, w, until) for w in range(4)))
            steady = sampler.median_since(t0 + seconds / 2)
            row = {"name": name, "start_mb": round(start, 1), "steady_mb": round(steady, 1),
                   "peak_mb": round(status_kb(proc.pid, "VmHWM") / 1024, 1), "results": results}
            if extra is not None:
                row |= await extra(client, url, proc.pid)
            sampler.stop()
            row["peak_mb"] = round(status_kb(proc.pid, "VmHWM") / 1024, 1)
            if limit_mb:
                row |= {"limit_mb": limit_mb, "oom_kills": proc.oom_kills(), "alive": proc.poll() is None,
                        "cgroup_peak_mb": round((proc.peak_bytes() or 0) / 2**20, 1)}
            return row
    finally:
        proc.terminate()
        proc.wait(15)


def warm_bytecode(cache: Path) -> None:
    """Compile everything the processes may import, as the images ship it (``UV_COMPILE_BYTECODE``, compileall of the
    workspace, the interpreter's own library): a module compiled at run time would cost its process several MB of
    compiler memory that production never spends (anyio's asyncio backend, loaded at the first request, 8 MB)."""
    import sysconfig

    paths = [sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"],
             *(str(p) for p in REPO.glob("libs/*/src")), *(str(p) for p in REPO.glob("services/*/src"))]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {"PYTHONPYCACHEPREFIX": str(cache)}
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j0", *paths], env=env, check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # a few test files do not compile


async def measure(args: argparse.Namespace) -> dict:
    from letsbe_agent import fernet
    from letsbe_platform.testing import free_port

    tmp = Path(tempfile.mkdtemp(prefix="agent-mem-"))
    pycache = Path(tempfile.gettempdir()) / "letsbe-bench-pycache"  # kept between runs: compiling takes a minute
    warm_bytecode(pycache)
    rng = random.Random(42)
    secrets = make_secrets(rng)
    key = fernet.generate_key()
    doc = {"version": 1, "secrets": {n: {"value": v, "tools": ["ghost"]} for n, v in secrets.items()}}
    (tmp / "secrets.enc").write_bytes(fernet.encrypt(key, json.dumps(doc).encode()))
    policy = tmp / "policy.json"
    policy.write_text(json.dumps(POLICY))
    world_proc = subprocess.Popen([sys.executable, __file__, "--serve-world"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
    world = json.loads(world_proc.stdout.readline())
    hub = f"http://127.0.0.1:{world['hub']}"
    bodies = [json.dumps(make_body(65536, secrets, rng, leaks)).encode() for leaks in (0, 10)]
    stream_body = json.dumps({"model": "m", "stream": True, "messages": [
        {"role": "user", "content": "hello " * 700}]}).encode()
    sp_headers = {"Authorization": f"Bearer {SENTINEL}", "content-type": "application/json"}
    floor_headers = {"x-upstream-key": f"Bearer {world['api_key']}", "content-type": "application/json"}
    sw_headers = {"Authorization": f"Bearer {TOOLS_TOKEN}"}
    rows = []
    try:
        floor_env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(pycache),
                     "SSL_CERT_DIR": "/etc/ssl/certs"}  # the same environment as the agents
        up = f"http://127.0.0.1:{world['upstream']}"
        tool = f"http://127.0.0.1:{world['tool']}"

        async def cap_phase(client, url, pid) -> dict:
            """Bodies at the proxy's cap, 4 at once, then one byte over it: the bound, and the 413."""
            cap = args.cap_bytes
            text = "lorem ipsum dolor sit amet " * (cap // 27 + 1)
            body = json.dumps({"model": "m", "messages": [{"role": "user", "content": ""}]})
            filler = text[: cap - len(body)]
            at_cap = json.dumps({"model": "m", "messages": [{"role": "user", "content": filler}]}).encode()
            assert len(at_cap) <= cap
            codes = await asyncio.gather(*(client.post(url + "/v1/chat/completions", content=at_cap,
                                                       headers=sp_headers) for _ in range(4)))
            over = await client.post(url + "/v1/chat/completions", content=at_cap + b" " * (cap + 1 - len(at_cap)),
                                     headers=sp_headers)
            return {"cap_codes": sorted(r.status_code for r in codes), "over_cap": over.status_code,
                    "over_cap_type": over.headers.get("content-type")}

        def floor(kind: str, port: int) -> list[str]:
            return [sys.executable, __file__, "--serve-floor", str(port), up, tool, kind]

        def sp_load(c, u, w, until):
            return proxy_load(c, u, sp_headers, bodies, stream_body, until)

        def floor_proxy_load(c, u, w, until):
            return proxy_load(c, u, floor_headers, bodies, stream_body, until)

        if not args.limits:  # the floors run unlimited; a soak (--limits) measures the agents only
            port = free_port()
            rows.append(await measure_one("floor (proxy load)", floor("plain", port), floor_env, port,
                                          floor_proxy_load, args.seconds))
            port = free_port()
            rows.append(await measure_one("lean floor (proxy load)", floor("lean", port), floor_env, port,
                                          floor_proxy_load, args.seconds))
        port = free_port()
        rows.append(await measure_one(
            "secrets-proxy", [sys.executable, "-m", "letsbe_secrets_proxy"],
            agent_env("secrets-proxy", port, tmp / "sp", world, tmp / "secrets.enc", key, policy, pycache), port,
            sp_load, args.seconds, hub, "secrets-proxy", cap_phase, LIMITS_MB["secrets-proxy"] if args.limits else 0))
        if not args.limits:
            port = free_port()
            rows.append(await measure_one("floor (gate load)", floor("plain", port), floor_env, port,
                                          lambda c, u, w, until: gate_load(c, u, {}, w, until), args.seconds))
        port = free_port()
        rows.append(await measure_one(
            "safety-wrapper", [sys.executable, "-m", "letsbe_safety_wrapper"],
            agent_env("safety-wrapper", port, tmp / "sw", world, tmp / "secrets.enc", key, policy, pycache), port,
            lambda c, u, w, until: gate_load(c, u, sw_headers, w, until), args.seconds, hub, "safety-wrapper",
            limit_mb=LIMITS_MB["safety-wrapper"] if args.limits else 0))
        import httpx

        async with httpx.AsyncClient() as client:
            chat_answers = (await client.get(hub + "/beats")).json()["chat answers"]
    finally:
        world_proc.stdin.close()
        world_proc.wait(15)
    return {"rows": rows, "seconds": args.seconds, "cap_bytes": args.cap_bytes, "limits": args.limits,
            "chat_answers": chat_answers,
            "loadavg": [round(x, 2) for x in os.getloadavg()]}


SETUP = (
    "Each agent started as its container starts it (`python -m …`, production-like environment: a hub to register "
    "and heartbeat with every second, the tenant's secret store with 1,000 secrets, the usage ledger, all bytecode "
    "compiled (the interpreter's library, the dependencies, the workspace) and `SSL_CERT_DIR` set as in the images). "
    "Load: 4 clients; the proxy: 64 KB chat bodies (clean, and "
    "with 10 secrets in them) and streamed answers, then 4 bodies at the 1 MiB cap at once; the gate: allowed tool "
    "calls with unique arguments and 64 KB answers, gated calls asking the hub for approval, one call repeated into "
    "the loop limit; meanwhile the Safety Wrapper's chat relay answers 4 KB customer messages from the stand-in hub "
    "over its WebSocket, one after the other (each through the fake model, standing in for OpenClaw's chat API)."
)


def _codes(row: dict) -> dict[str, int]:
    total: dict[str, int] = {}
    for per_worker in row["results"]:
        for code, n in per_worker.items():
            total[str(code)] = total.get(str(code), 0) + n
    return total


def report(r: dict) -> str:
    rows = {row["name"]: row for row in r["rows"]}
    sp, sw = rows["secrets-proxy"], rows["safety-wrapper"]
    if r["limits"]:
        lines = [
            "<!-- agent-memory-soak:start -->",
            f"### Soak inside the rendered limits ({time.strftime('%Y-%m-%d')}, "
            f"`bench/agent_memory.py --limits --seconds {r['seconds']:g}`)",
            "",
            f"{SETUP} Each agent runs in its own memory cgroup with its compose `mem_limit` enforced "
            f"(`letsbe_sandbox.memlimit.spawn`), {r['seconds']:g} s of load. The cgroup's peak counts what the "
            "kernel charges to the container (its own memory and the page cache it brings in, not the shared "
            f"libraries other processes already hold). Load average at the end: {r['loadavg']}.",
            "",
            "| agent | limit | RSS after start-up | RSS steady | RSS peak | cgroup peak | OOM kills | still the same "
            "process |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for a in (sp, sw):
            lines.append(f"| {a['name']} | {a['limit_mb']} MB | {a['start_mb']} MB | {a['steady_mb']} MB "
                         f"| {a['peak_mb']} MB | {a['cgroup_peak_mb']} MB | {a['oom_kills']} "
                         f"| {'yes' if a['alive'] else '**no**'} |")
        lines += ["", f"Requests served: proxy {sum(sp['results'])}; gate {sum(_codes(sw).values())} by status "
                  f"{_codes(sw)}.", "<!-- agent-memory-soak:end -->"]
        return "\n".join(lines)
    lines = [
        "<!-- agent-memory-bench:start -->",
        f"## Tenant agents: memory after start-up, under load, and the peak ({time.strftime('%Y-%m-%d')}, "
        "`bench/agent_memory.py`)",
        "",
        f"{SETUP} {r['seconds']:g} s of load per process. Floor: a bare FastAPI + uvicorn + httpx app "
        "(`uvicorn.run(app)`, its defaults) that passes the same requests through, in the same run, environment and "
        "load; lean floor: the same app with what the agents do for their memory (the unused optional extras "
        "skipped, uvicorn without its command line, asyncio loop, no WebSocket stack). Steady = median RSS over "
        "the second half of the load; peak = the kernel's high-water mark (start-up included). Load average at the "
        f"end: {r['loadavg']}.",
        "",
        "| process | after start-up | steady under load | peak | peak vs floor | peak vs lean floor | target "
        "(limit) |",
        "|---|---|---|---|---|---|---|",
    ]
    lean = rows["lean floor (proxy load)"]["peak_mb"]
    for name in ("floor (proxy load)", "lean floor (proxy load)", "secrets-proxy", "floor (gate load)",
                 "safety-wrapper"):
        a = rows[name]
        floor = rows["floor (gate load)" if name in ("floor (gate load)", "safety-wrapper") else "floor (proxy load)"]
        target = ""
        if name in TARGETS_MB:
            met = "met" if a["peak_mb"] <= TARGETS_MB[name] else "**not met**"
            target = f"≤ {TARGETS_MB[name]} MB ({LIMITS_MB[name]} MB): {met}"
        vs_lean = f"{a['peak_mb'] / lean:.2f}x" if "proxy" in name or name == "secrets-proxy" else ""
        lines.append(f"| {name} | {a['start_mb']} MB | {a['steady_mb']} MB | {a['peak_mb']} MB "
                     f"| {a['peak_mb'] / floor['peak_mb']:.2f}x | {vs_lean} | {target} |")
    lines += [
        "",
        f"Requests served: proxy {sum(sp['results'])}; gate {sum(_codes(sw).values())} by status {_codes(sw)}; "
        f"chat messages the relay answered: {r['chat_answers']}. "
        f"Bodies at the proxy's cap ({r['cap_bytes'] // 1024} KB, 4 at once): {sp['cap_codes']}; one byte over: "
        f"{sp['over_cap']} ({sp['over_cap_type']}).",
        "<!-- agent-memory-bench:end -->",
    ]
    return "\n".join(lines)


def write(text: str) -> None:
    path = REPO / "docs/benchmarks.md"
    doc = path.read_text()
    marker = text.split("\n", 1)[0].removesuffix(":start -->")
    start, end = marker + ":start -->", marker + ":end -->"
    if start in doc:
        doc = doc[: doc.index(start)] + text + doc[doc.index(end) + len(end):]
    else:
        doc = doc.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(doc)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--cap-bytes", type=int, default=1024 * 1024, help="the proxy's max_request_bytes")
    parser.add_argument("--limits", action="store_true",
                        help="run each agent inside its rendered memory limit (letsbe_sandbox.memlimit): a soak")
    parser.add_argument("--serve-world", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-floor", nargs=4, help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.serve_world:
        serve_world()
        return
    if a.serve_floor:
        serve_floor(int(a.serve_floor[0]), a.serve_floor[1], a.serve_floor[2], a.serve_floor[3] == "lean")
        return
    res = asyncio.run(measure(a))
    print(json.dumps(res, indent=2))
    text = report(res)
    print(text)
    if a.write:
        write(text)


if __name__ == "__main__":
    main()
