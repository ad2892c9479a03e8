"""The tenant agents inside their rendered memory limits (64 MB the Secrets Proxy, 128 MB the Safety Wrapper), the
way the sandbox starts them (letsbe_sandbox.memlimit.spawn): a soak under load ends with no OOM kill and no restart.
A longer soak: ``bench/agent_memory.py --limits --seconds 300`` (result in docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import string
import sys
import uuid

import httpx
import pytest
from fastapi import FastAPI

from letsbe_agent import fernet
from letsbe_fakes import LoopbackServer
from letsbe_fakes.openai import FakeOpenAI
from letsbe_platform.testing import eventually, eventually_blocking, free_port
from letsbe_platform.testing.processes import ServiceProcess
from letsbe_sandbox import memlimit
from letsbe_sandbox.memlimit import spawn

ADMIN = "lbh_test-admin-token-0123456789abcdef"
SENTINEL = "lbsp-sentinel-for-the-soak-test-0123"
TOOLS_TOKEN = "lbsw-tools-token-for-the-soak-test-01"
# The soak's budget is a number of requests, not seconds: the same load proves the same on a busy machine as on an
# idle one (a 64 KB chat body per proxy request; about 12 s on a busy 2-core machine).
PROXY_ROUNDS = 16  # per proxy client: two chat calls and one stream each
GATE_ROUNDS = 25  # per gate client: two tool calls each
POLICY = {
    "version": 1,
    "default_autonomy_level": 1,
    "autonomy_levels": {"1": {"name": "supervised", "execute": ["GREEN"]}},
    "approval_ttl_seconds": {"YELLOW": 600, "YELLOW_EXTERNAL": 600, "RED": 600, "CRITICAL_RED": 300},
    "default_limits": {"per_minute": 10_000, "loop_repeats": 20, "loop_window_seconds": 60},
    "tools": {
        "ghost": {
            "actions": {
                "posts.list": {
                    "class": "GREEN",
                    "http": {
                        "method": "GET",
                        "path": "/posts",
                        "headers": {"Authorization": "Ghost SECRET_REF(secret_0001)"},
                    },
                },
                "posts.update": {"class": "YELLOW", "http": {"method": "PUT", "path": "/posts/{id}"}},
            }
        }
    },
    "escalations": [],
}


def _python(*code: str) -> list[str]:
    return [sys.executable, "-c", "\n".join(code)]


def test_a_process_over_its_limit_is_oom_killed_and_the_log_says_so(tmp_path):
    proc = spawn(
        _python("x = bytearray(200 * 1024 * 1024)", "print('survived')"),
        env=os.environ,
        mem_limit_mb=48,
        log_path=tmp_path / "hog.log",
    )
    if proc.cgroup is None:
        pytest.skip("no memory cgroup can be made here (needs root and a memory controller)")
    cgroup = proc.cgroup
    assert proc.wait(30) == -9
    assert proc.oom_kills() == 1
    eventually_blocking(
        lambda: not cgroup.exists() and "KILLED" in (tmp_path / "hog.log").read_text(),
        "the cgroup removed and the kill reported",
    )
    log = (tmp_path / "hog.log").read_text()
    assert "survived" not in log and "KILLED by the kernel's OOM killer (1x) at its 48 MB limit" in log
    assert proc.oom_kills() == 1  # still known once the cgroup is gone

    ok = spawn(
        _python("x = bytearray(8 * 1024 * 1024)", "print('fine')"),
        env=os.environ,
        mem_limit_mb=48,
        log_path=tmp_path / "ok.log",
    )
    assert ok.wait(30) == 0 and ok.oom_kills() == 0


def test_without_cgroups_the_process_runs_unlimited_with_a_clear_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(memlimit, "CGROUP_ROOT", tmp_path / "no-cgroupfs")
    proc = spawn(_python("print('ran')"), env=os.environ, mem_limit_mb=64, log_path=tmp_path / "p.log")
    assert proc.wait(30) == 0 and proc.cgroup is None and proc.oom_kills() == 0
    log = (tmp_path / "p.log").read_text()
    assert "WARNING: memory limit NOT enforced (64 MB wanted)" in log and "ran" in log
    assert "memory limit NOT enforced" in caplog.text


def test_a_service_without_a_limit_runs_as_it_is(tmp_path):
    proc = spawn(
        _python("print('no limit asked')"), env=os.environ, mem_limit_mb=None, log_path=tmp_path / "logs" / "p.log"
    )
    assert proc.wait(30) == 0 and proc.cgroup is None
    assert (tmp_path / "logs" / "p.log").read_text() == "no limit asked\n"


def _store(path, key: str) -> dict[str, str]:
    rng = random.Random(3)
    alphabet = string.ascii_letters + string.digits + "-_/+!@"
    secrets = {f"secret_{i:04d}": "".join(rng.choices(alphabet, k=rng.randint(12, 48))) for i in range(1000)}
    doc = {"version": 1, "secrets": {n: {"value": v, "tools": ["ghost"]} for n, v in secrets.items()}}
    path.write_bytes(fernet.encrypt(key, json.dumps(doc).encode()))
    return secrets


def _chat(size: int, secrets: list[str], rng: random.Random) -> bytes:
    words = "the customer asked about invoice number and delivery date of order please check".split()
    text = " ".join(rng.choice(words) for _ in range(size // 6))[:size]
    text = " ".join([text[: size // 2], *secrets, text[size // 2 :]])
    return json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}).encode()


async def test_proxy_and_gate_soak_under_load_inside_their_limits(service_env, processes, tmp_path):
    hub = ServiceProcess(
        "letsbe_hub",
        service_env | {"LETSBE_HUB_BOOTSTRAP_ADMIN_TOKEN": ADMIN, "LETSBE_HUB_HEARTBEAT_INTERVAL_SECONDS": "1"},
        port_env="LETSBE_HUB_PORT",
    ).start()
    processes.append(hub)
    key = fernet.generate_key()
    secrets = _store(tmp_path / "secrets.enc", key)
    (tmp_path / "policy.json").write_text(json.dumps(POLICY))
    tool = FastAPI()
    page = {"posts": [{"id": i, "html": "<p>" + "lorem ipsum " * 40 + "</p>"} for i in range(120)]}  # ~64 KB

    @tool.api_route("/{path:path}", methods=["GET", "PUT"])
    async def tool_route(path: str) -> dict:
        return page

    upstream = FakeOpenAI()
    upstream.record_bodies = False
    upstream.reply = "ok " * 200
    await hub.wait_ready()
    tenant = str(uuid.uuid4())
    started: list[memlimit.LimitedProcess] = []
    with LoopbackServer(upstream.app) as up, LoopbackServer(tool) as tool_server:
        async with httpx.AsyncClient(
            base_url=hub.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30
        ) as admin:
            agents = {}
            for name, prefix, limit in (("secrets-proxy", "LETSBE_SP_", 64), ("safety-wrapper", "LETSBE_SW_", 128)):
                r = await admin.post(
                    f"/api/v1/admin/tenants/{tenant}/registration-tokens",
                    json={"domain": "soak.example.com", "order_id": tenant, "tier": "build", "region": "eu"},
                )
                assert r.status_code == 201, r.text
                port = free_port()
                env = {k: v for k, v in os.environ.items() if not k.startswith("LETSBE_")} | {
                    f"{prefix}PORT": str(port),
                    f"{prefix}HUB_URL": hub.url,
                    f"{prefix}REGISTRATION_TOKEN": r.json()["token"],
                    f"{prefix}STATE_DIR": str(tmp_path / name),
                    f"{prefix}SECRETS_PATH": str(tmp_path / "secrets.enc"),
                    f"{prefix}SECRETS_KEY": key,
                    f"{prefix}USAGE_LEDGER_PATH": str(tmp_path / "usage.sqlite3"),
                    f"{prefix}DOCKER_SOCKET": str(tmp_path / "no-docker.sock"),
                    f"{prefix}BACKUP_STATUS_PATH": str(tmp_path / "backup-status.json"),
                    "LETSBE_SP_SENTINEL_KEY": SENTINEL,
                    "LETSBE_SP_UPSTREAM_API_KEY": upstream.api_key,
                    "LETSBE_SP_UPSTREAM_BASE_URL": up.url + "/v1",
                    "LETSBE_SW_TOOLS_TOKEN": TOOLS_TOKEN,
                    "LETSBE_SW_TOOLS_POLICY_PATH": str(tmp_path / "policy.json"),
                    "LETSBE_SW_TOOLS_DIR": str(tmp_path / "tools"),
                    "LETSBE_SW_TOOL_PORTS": json.dumps({"ghost": tool_server.port}),
                }
                module = "letsbe_" + name.replace("-", "_")
                proc = spawn(
                    [sys.executable, "-m", module], env=env, mem_limit_mb=limit, log_path=tmp_path / f"{name}.log"
                )
                started.append(proc)
                if proc.cgroup is None:
                    pytest.skip("no memory cgroup can be made here (needs root and a memory controller)")
                agents[name] = (proc, f"http://127.0.0.1:{port}")
            try:
                await _soak(admin, tenant, agents, secrets, tmp_path)
            finally:
                for proc in started:
                    proc.terminate()
                    proc.wait(30)


async def _soak(admin: httpx.AsyncClient, tenant: str, agents: dict, secrets: dict[str, str], tmp_path) -> None:
    sp = agents["secrets-proxy"][1]
    sw = agents["safety-wrapper"][1]

    async def beating() -> bool:
        view = (await admin.get(f"/api/v1/admin/tenants/{tenant}")).json()
        return {a["agent"] for a in view.get("agents", []) if a["last_heartbeat_at"]} == set(agents)

    async def alive_and_beating() -> bool:
        for name, (proc, _) in agents.items():
            assert proc.poll() is None, (tmp_path / f"{name}.log").read_text()[-3000:]
        return await beating()

    await eventually(alive_and_beating, "the agents registered and heartbeating", timeout=30, every=0.2)

    rng = random.Random(5)
    values = list(secrets.values())
    bodies = [_chat(64 * 1024, [], rng), _chat(64 * 1024, rng.sample(values, 10), rng)]
    stream = json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi " * 2000}]})
    counts: dict[str, int] = {}

    async def proxy_client() -> None:
        async with httpx.AsyncClient(base_url=sp, headers={"Authorization": f"Bearer {SENTINEL}"}, timeout=30) as c:
            for _ in range(PROXY_ROUNDS):
                for body in bodies:
                    r = await c.post("/v1/chat/completions", content=body)
                    assert r.status_code == 200, r.text[:300]
                    assert "secret_" not in r.text or "SECRET_REF" in r.text
                async with c.stream("POST", "/v1/chat/completions", content=stream) as r:
                    assert r.status_code == 200
                    async for _ in r.aiter_raw():
                        pass
                counts["proxy"] = counts.get("proxy", 0) + 3

    async def gate_client(worker: int) -> None:
        async with httpx.AsyncClient(base_url=sw, headers={"Authorization": f"Bearer {TOOLS_TOKEN}"}, timeout=30) as c:
            for i in range(1, GATE_ROUNDS + 1):
                calls = [
                    ({"tool": "ghost", "action": "posts.list", "args": {"page": f"{worker}-{i}"}}, {200}),
                    ({"tool": "ghost", "action": "posts.list", "args": {"page": "same"}}, {200, 429}),
                ]
                if i <= 2:  # a gated call asks the hub for an approval (a few: the hub's path is not what soaks)
                    calls.append(({"tool": "ghost", "action": "posts.update", "args": {"id": f"{worker}-{i}"}}, {202}))
                for call, expected in calls:
                    r = await c.post("/api/v1/tools/execute", json=call)
                    assert r.status_code in expected, r.text[:300]
                    counts[str(r.status_code)] = counts.get(str(r.status_code), 0) + 1

    await asyncio.gather(*(proxy_client() for _ in range(3)), *(gate_client(w) for w in range(2)))
    assert await beating()
    for name, (proc, _) in agents.items():
        log = (tmp_path / f"{name}.log").read_text()
        assert proc.poll() is None, f"{name} exited (no restart allowed):\n{log[-3000:]}"
        assert proc.oom_kills() == 0, f"{name} was OOM-killed:\n{log[-3000:]}"
        assert "limit" in log and "NOT enforced" not in log
    assert counts["proxy"] > 30 and counts["200"] > 30 and counts["202"] == 4, counts
