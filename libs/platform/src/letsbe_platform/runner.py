"""``make run``: real Postgres and NATS (embedded unless DATABASE_URL / NATS_URL are set), migrations, and every
service as its own process with prefixed log lines. Ctrl-C stops everything cleanly."""

from __future__ import annotations

import asyncio
import contextlib
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


SERVICES = (
    Service("hub-api", "letsbe_hub", 3847, "LETSBE_HUB_PORT"),
    Service("provisioner", "letsbe_provisioner", 3850, "LETSBE_PROVISIONER_PORT"),
    Service("dns", "letsbe_dns", 3851, "LETSBE_DNS_PORT"),
    Service("monitor", "letsbe_monitor", 3852, "LETSBE_MONITOR_PORT"),
    Service("safety-wrapper", "letsbe_safety_wrapper", 8200, "LETSBE_SW_PORT"),
    Service("secrets-proxy", "letsbe_secrets_proxy", 8100, "LETSBE_SP_PORT"),
)
COLORS = ("36", "33", "35", "32", "34", "31")


def _port(svc: Service) -> int:
    return int(os.environ.get(svc.port_env, svc.port))


async def _pump(name: str, color: str, stream: asyncio.StreamReader) -> None:
    prefix = f"\x1b[{color}m{name:>15} |\x1b[0m " if sys.stdout.isatty() else f"{name:>15} | "
    while line := await stream.readline():
        sys.stdout.write(prefix + line.decode(errors="replace"))
        sys.stdout.flush()


async def _wait_ready(svc: Service, timeout: float = 60) -> bool:
    url = f"http://127.0.0.1:{_port(svc)}/readyz"
    async with httpx.AsyncClient() as client:
        for _ in range(int(timeout * 5)):
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url, timeout=1)).status_code == 200:
                    return True
            await asyncio.sleep(0.2)
    return False


async def _supervise(env: dict[str, str]) -> int:
    procs: dict[str, asyncio.subprocess.Process] = {}
    pumps = []
    for svc, color in zip(SERVICES, COLORS, strict=True):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            svc.module,
            env={**env, svc.port_env: str(_port(svc))},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        procs[svc.name] = proc
        assert proc.stdout is not None
        pumps.append(asyncio.create_task(_pump(svc.name, color, proc.stdout)))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    ready = await asyncio.gather(*(_wait_ready(s) for s in SERVICES))
    print("\nLetsBe control plane is up:", flush=True)
    for svc, ok in zip(SERVICES, ready, strict=True):
        state = "ready" if ok else "NOT READY (see its log lines)"
        print(f"  {svc.name:<15} http://127.0.0.1:{_port(svc)}  (/docs, /readyz, /metrics)  {state}")
    print("Press Ctrl-C to stop.\n", flush=True)

    exited = [asyncio.create_task(p.wait()) for p in procs.values()]
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait([*exited, stopper], return_when=asyncio.FIRST_COMPLETED)
    code = 0
    for name, proc in procs.items():
        if proc.returncode is not None and proc.returncode != 0 and not stop.is_set():
            print(f"{name} exited with {proc.returncode}; stopping everything", file=sys.stderr)
            code = 1
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs.values())), timeout=30)
    for proc in procs.values():
        if proc.returncode is None:
            proc.kill()
    await asyncio.gather(*pumps, return_exceptions=True)
    return code


def main() -> None:
    env = dict(os.environ)
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
            print(f"  postgres  {s.postgres.url}\n  nats      {s.nats.url}", flush=True)
        print("applying migrations", flush=True)
        migrations.upgrade(env["DATABASE_URL"])
        sys.exit(asyncio.run(_supervise(env)))


if __name__ == "__main__":
    main()
