"""``make run``: real Postgres and NATS (embedded unless DATABASE_URL / NATS_URL are set), migrations, and every
service as its own process with prefixed log lines. Ctrl-C stops everything cleanly.

With no provider credentials in the environment it runs in **sandbox mode**: ``python -m letsbe_sandbox`` starts
loopback fakes of Stripe, Cloudflare, Hetzner and Netcup, an SSH "VPS" and a Docker Engine, and writes the
settings that point each service at them. The services themselves are the same code either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from letsbe_platform import devstack, migrations


@dataclass(frozen=True)
class Service:
    name: str
    module: str
    port: int
    port_env: str
    tenant_side: bool = False  # an agent: it may stop (a tenant going dark) without stopping the control plane


SERVICES = (
    Service("hub-api", "letsbe_hub", 3847, "LETSBE_HUB_PORT"),
    Service("provisioner", "letsbe_provisioner", 3850, "LETSBE_PROVISIONER_PORT"),
    Service("dns", "letsbe_dns", 3851, "LETSBE_DNS_PORT"),
    Service("monitor", "letsbe_monitor", 3852, "LETSBE_MONITOR_PORT"),
    Service("safety-wrapper", "letsbe_safety_wrapper", 8200, "LETSBE_SW_PORT", tenant_side=True),
    Service("secrets-proxy", "letsbe_secrets_proxy", 8100, "LETSBE_SP_PORT", tenant_side=True),
)
CORE = frozenset({"sandbox"} | {s.name for s in SERVICES if not s.tenant_side})
COLORS = ("36", "33", "35", "32", "34", "31", "37")
# Any of these set means a real provider is configured: sandbox mode is off.
PROVIDER_CREDENTIALS = (
    "LETSBE_HUB_STRIPE_SECRET_KEY",
    "LETSBE_HUB_HETZNER_API_TOKEN",
    "LETSBE_HUB_NETCUP_REFRESH_TOKEN",
    "LETSBE_DNS_CLOUDFLARE_API_TOKEN",
)
SANDBOX_BANNER = """
  ############################################################################
  #  SANDBOX MODE: no provider credentials are configured, so Stripe,        #
  #  Cloudflare, Hetzner and Netcup are loopback fakes, the VPS is a loopback #
  #  SSH target and the tenant agents run here. Nothing is charged or real.   #
  ############################################################################
"""


def tenant_env(env: dict[str, str]) -> dict[str, str]:
    """What a tenant agent inherits: never the control plane services' settings (a tenant never has those, and an
    agent refuses LETSBE_ variables it does not read)."""
    control_plane = tuple(s.port_env.removesuffix("PORT") for s in SERVICES if not s.tenant_side)
    return {k: v for k, v in env.items() if not k.upper().startswith(control_plane)}


def sandbox_wanted(env: dict[str, str]) -> bool:
    explicit = env.get("LETSBE_SANDBOX", "").lower()
    if explicit in ("0", "false", "no"):
        return False
    if explicit in ("1", "true", "yes"):
        return True
    return not any(env.get(k) for k in PROVIDER_CREDENTIALS)


def port(svc: Service, env: dict[str, str] | None = None) -> int:
    return int((env or os.environ).get(svc.port_env, svc.port))


async def _pump(name: str, color: str, stream: asyncio.StreamReader, seen: asyncio.Queue[str] | None = None) -> None:
    prefix = f"\x1b[{color}m{name:>15} |\x1b[0m " if sys.stdout.isatty() else f"{name:>15} | "
    while line := await stream.readline():
        text = line.decode(errors="replace")
        sys.stdout.write(prefix + text)
        sys.stdout.flush()
        if seen is not None:
            seen.put_nowait(text.strip())


async def _wait_ready(url: str, timeout: float = 60) -> bool:
    async with httpx.AsyncClient() as client:
        for _ in range(int(timeout * 5)):
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url + "/readyz", timeout=1)).status_code == 200:
                    return True
            await asyncio.sleep(0.2)
    return False


class Supervisor:
    """Child processes with prefixed output; the first to die unasked stops the rest."""

    def __init__(self) -> None:
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.pumps: list[asyncio.Task[None]] = []

    async def spawn(self, name: str, module: str, env: dict[str, str], seen: asyncio.Queue[str] | None = None) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        self.procs[name] = proc
        assert proc.stdout is not None
        self.pumps.append(asyncio.create_task(_pump(name, COLORS[len(self.pumps) % len(COLORS)], proc.stdout, seen)))

    async def wait_any_exit(self, stop: asyncio.Event, ignore: frozenset[str] = frozenset()) -> None:
        exited = [asyncio.create_task(p.wait()) for name, p in self.procs.items() if name not in ignore]
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait([*exited, stopper], return_when=asyncio.FIRST_COMPLETED)
        for t in [*exited, stopper]:
            t.cancel()

    async def stop_all(self) -> None:
        # Services first (they drain their consumers and may still call a fake), the sandbox world last.
        services = [p for name, p in self.procs.items() if name != "sandbox"]
        world = [p for name, p in self.procs.items() if name == "sandbox"]
        for group in (services, world):
            for proc in group:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(p.wait() for p in group)), timeout=30)
            for proc in group:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        await asyncio.gather(*self.pumps, return_exceptions=True)


async def _start_sandbox(sup: Supervisor, env: dict[str, str]) -> dict[str, dict[str, str]]:
    root = Path(env.setdefault("LETSBE_SANDBOX_DIR", str(Path(".data/sandbox").resolve())))  # noqa: ASYNC240 - once, at start
    (root / "env.json").unlink(missing_ok=True)
    seen: asyncio.Queue[str] = asyncio.Queue()
    await sup.spawn("sandbox", "letsbe_sandbox", env, seen)
    async with asyncio.timeout(60):
        while (line := await seen.get()) != "sandbox ready":
            del line
    world = json.loads((root / "env.json").read_text())
    return world["env"]


async def _supervise(env: dict[str, str], sandbox: bool) -> int:
    sup = Supervisor()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    code = 0
    try:
        per_service = await _start_sandbox(sup, env) if sandbox else {}
        for svc in SERVICES:
            base = tenant_env(env) if svc.tenant_side else env
            await sup.spawn(
                svc.name, svc.module, {**base, **per_service.get(svc.name, {}), svc.port_env: str(port(svc, env))}
            )
        ready = await asyncio.gather(*(_wait_ready(f"http://127.0.0.1:{port(s, env)}") for s in SERVICES))
        if sandbox:
            print(SANDBOX_BANNER, flush=True)
        print("LetsBe control plane is up:", flush=True)
        for svc, ok in zip(SERVICES, ready, strict=True):
            state = "ready" if ok else "NOT READY (see its log lines)"
            print(f"  {svc.name:<15} http://127.0.0.1:{port(svc, env)}  (/docs, /readyz, /metrics)  {state}")
        if sandbox:
            token_file = Path(env["LETSBE_SANDBOX_DIR"]) / "admin-token"
            hub = f"http://127.0.0.1:{port(SERVICES[0], env)}"
            print(
                "\nTry it (a paid order walking to FULFILLED, live):\n"
                f"  .venv/bin/letsbe-sandbox order --domain shop.example.com --tools nextcloud,ghost\n"
                f"  export TOKEN=$(cat {token_file})\n"
                f'  curl -s -H "Authorization: Bearer $TOKEN" {hub}/api/v1/admin/orders | python3 -m json.tool',
                flush=True,
            )
        print("Press Ctrl-C to stop.\n", flush=True)
        await sup.wait_any_exit(stop, ignore=frozenset(s.name for s in SERVICES if s.tenant_side))
        for name, proc in sup.procs.items():
            if proc.returncode not in (None, 0) and not stop.is_set() and name in CORE:
                print(f"{name} exited with {proc.returncode}; stopping everything", file=sys.stderr)
                code = 1
    finally:
        await sup.stop_all()
    return code


def main() -> None:
    env = dict(os.environ)
    sandbox = sandbox_wanted(env)
    with contextlib.ExitStack() as stack:
        if not (env.get("DATABASE_URL") and env.get("NATS_URL")):
            root = Path(env.get("LETSBE_DATA_DIR", ".data")).resolve()
            print(f"starting embedded Postgres 16 and NATS JetStream (data in {root})", flush=True)
            s = stack.enter_context(
                devstack.running(
                    root,
                    pg_port=int(env.get("LETSBE_PG_PORT", 54329)),
                    nats_port=int(env.get("LETSBE_NATS_PORT", 4229)),
                )
            )
            env.update(DATABASE_URL=s.postgres.url, NATS_URL=s.nats.url)
            env.setdefault("LETSBE_SANDBOX_DIR", str(root / "sandbox"))
            print(f"  postgres  {s.postgres.url}\n  nats      {s.nats.url}", flush=True)
        print("applying migrations", flush=True)
        migrations.upgrade(env["DATABASE_URL"])
        sys.exit(asyncio.run(_supervise(env, sandbox)))


if __name__ == "__main__":
    main()
