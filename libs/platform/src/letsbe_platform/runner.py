"""``make run``: real Postgres and NATS (embedded unless DATABASE_URL / NATS_URL are set), migrations, and every
service as its own process with prefixed log lines. Ctrl-C stops everything cleanly.

It is a development supervisor: a service that dies is restarted with backoff (a crash loop stops everything and
prints that service's last log lines), a dead embedded Postgres or NATS is started again on the same data and port,
and a lock on the data folder keeps a second ``letsbe-run`` from touching a running stack. Production does not use
it: there compose restart policies supervise the containers (docs/runbook.md).

With no provider credentials in the environment it runs in **sandbox mode**: ``python -m letsbe_sandbox`` starts
loopback fakes of Stripe, Cloudflare, Hetzner and Netcup, one SSH "VPS" per Hetzner server (each with its own
Docker Engine and, once provisioned, its own tenant agents), and writes the settings that point each service at
them. The services themselves are the same code either way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Nothing heavy at import time: `letsbe-run --help` answers at once; httpx and the migrations (SQLAlchemy, Alembic,
# every service's models) are imported where they are used.
from letsbe_platform import devstack


@dataclass(frozen=True)
class Service:
    name: str
    module: str
    port: int
    port_env: str


# The control plane. The tenant agents (safety-wrapper, secrets-proxy) run per tenant: on the tenant's server, or
# in sandbox mode on each sandbox VPS, started from the compose file the provisioner rendered there.
SERVICES = (
    Service("hub-api", "letsbe_hub", 3847, "LETSBE_HUB_PORT"),
    Service("provisioner", "letsbe_provisioner", 3850, "LETSBE_PROVISIONER_PORT"),
    Service("dns", "letsbe_dns", 3851, "LETSBE_DNS_PORT"),
    Service("monitor", "letsbe_monitor", 3852, "LETSBE_MONITOR_PORT"),
)
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
  #  Cloudflare, Hetzner and Netcup are loopback fakes, each Hetzner server  #
  #  is a loopback SSH "VPS" on its own 127.B.C.x, and each tenant's agents  #
  #  run here from its rendered compose file. Nothing is charged or real.    #
  ############################################################################
"""


def tenant_env(env: dict[str, str]) -> dict[str, str]:
    """What a tenant agent inherits: never the control plane services' settings (a tenant never has those, and an
    agent refuses LETSBE_ variables it does not read)."""
    control_plane = tuple(s.port_env.removesuffix("PORT") for s in SERVICES)
    return {k: v for k, v in env.items() if not k.upper().startswith(control_plane)}


def sandbox_wanted(env: dict[str, str]) -> bool:
    explicit = env.get("LETSBE_SANDBOX", "").lower()
    if explicit in ("0", "false", "no"):
        return False
    if explicit in ("1", "true", "yes"):
        return True
    return not any(env.get(k) for k in PROVIDER_CREDENTIALS)


def port(svc: Service, env: dict[str, str] | None = None, replica: int = 1) -> int:
    """Replica 1 listens on ``svc.port_env`` (default ``svc.port``); replica n on ``<port_env>_<n>``, by default
    100·(n-1) above replica 1's port."""
    env = env if env is not None else dict(os.environ)
    first = int(env.get(svc.port_env, svc.port))
    return first if replica == 1 else int(env.get(f"{svc.port_env}_{replica}", first + 100 * (replica - 1)))


def replica_name(svc: Service, replica: int) -> str:
    return svc.name if replica == 1 else f"{svc.name}-{replica}"


MAX_REPLICAS = 8


def scale(env: dict[str, str]) -> tuple[int, int]:
    """``LETSBE_REPLICAS`` (processes per service) and ``LETSBE_NATS_CLUSTER`` (embedded NATS nodes), both 1 by
    default. A cluster makes the streams R3 (``LETSBE_BUS_REPLICAS``) unless that is set."""
    replicas, nodes = int(env.get("LETSBE_REPLICAS") or 1), int(env.get("LETSBE_NATS_CLUSTER") or 1)
    if not 1 <= replicas <= MAX_REPLICAS:
        raise ValueError(f"LETSBE_REPLICAS must be 1..{MAX_REPLICAS}, not {replicas}")
    if nodes not in (1, 3, 5):
        raise ValueError(f"LETSBE_NATS_CLUSTER must be 1, 3 or 5 (a quorum needs an odd count), not {nodes}")
    return replicas, nodes


async def _pump(child: Child, color: str, stream: asyncio.StreamReader, seen: asyncio.Queue[str | None] | None) -> None:
    """Copy the child's output with its prefix; ``seen`` gets each line, then ``None`` when the output ends."""
    name = child.name
    prefix = f"\x1b[{color}m{name:>15} |\x1b[0m " if sys.stdout.isatty() else f"{name:>15} | "
    while line := await stream.readline():
        text = line.decode(errors="replace")
        sys.stdout.write(prefix + text)
        sys.stdout.flush()
        child.tail.append(text.rstrip("\n"))
        if seen is not None:
            seen.put_nowait(text.strip())
    if seen is not None:
        seen.put_nowait(None)


async def _wait_ready(url: str, timeout: float = 60) -> bool:
    import httpx

    from letsbe_platform.tls import client_context
    from letsbe_platform.waiting import Backoff, poll_until

    async with httpx.AsyncClient(verify=client_context()) as client:

        async def ready() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return (await client.get(url + "/readyz", timeout=1)).status_code == 200
            return False

        return await poll_until(ready, timeout=timeout, backoff=Backoff.constant(0.2))


def say(message: str) -> None:
    """The supervisor's own lines, told apart from the services' prefixed ones."""
    print(f"{'letsbe-run':>15} | {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class RestartPolicy:
    """Restart a process that died unasked after ``backoff`` doubling up to ``max_backoff`` seconds; more than
    ``limit`` restarts within ``window`` seconds is a crash loop: reported, and the stack stops."""

    limit: int = 5
    window: float = 60.0
    backoff: float = 0.5
    max_backoff: float = 15.0

    def delay(self, restarts: int) -> float:
        return min(self.backoff * 2 ** max(restarts - 1, 0), self.max_backoff)


class CrashLoop(Exception):
    def __init__(self, name: str, message: str, tail: Sequence[str] = ()):
        super().__init__(message)
        self.name = name
        self.tail = list(tail)


@dataclass
class Child:
    name: str
    module: str
    env: dict[str, str]
    ready_url: str | None = None  # where to check that a restarted copy is back
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    proc: asyncio.subprocess.Process | None = None


TAIL_LINES = 30


class Supervisor:
    """Child processes with prefixed output. A supervised child that dies unasked is restarted (with backoff, up to
    the policy's limit); any other child dying unasked, or a crash loop, stops everything."""

    def __init__(self, policy: RestartPolicy | None = None) -> None:
        self.policy = policy or RestartPolicy()
        self.children: dict[str, Child] = {}
        self.pumps: list[asyncio.Task[None]] = []
        self.reports: list[asyncio.Task[None]] = []  # "X is ready again" waits: cancelled, not awaited, at stop
        self.stopping = asyncio.Event()

    @property
    def procs(self) -> dict[str, asyncio.subprocess.Process]:
        return {name: c.proc for name, c in self.children.items() if c.proc is not None}

    async def spawn(self, child: Child, seen: asyncio.Queue[str | None] | None = None) -> Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            child.module,
            env=child.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        child.proc = proc
        self.children.setdefault(child.name, child)
        color = COLORS[list(self.children).index(child.name) % len(COLORS)]
        assert proc.stdout is not None
        self.pumps.append(asyncio.create_task(_pump(child, color, proc.stdout, seen)))
        return child

    async def keep_running(self, child: Child) -> None:
        """Restart ``child`` whenever it exits unasked; raises :class:`CrashLoop` past the policy's limit."""
        restarts: deque[float] = deque()
        loop = asyncio.get_running_loop()
        while True:
            assert child.proc is not None
            code = await child.proc.wait()
            if self.stopping.is_set():
                return
            now = loop.time()
            restarts.append(now)
            while restarts and restarts[0] < now - self.policy.window:
                restarts.popleft()
            if len(restarts) > self.policy.limit:
                raise CrashLoop(
                    child.name,
                    f"{child.name} is crash-looping: it exited {len(restarts)} times within "
                    f"{self.policy.window:g} s (last exit code {code}); giving up",
                    child.tail,
                )
            delay = self.policy.delay(len(restarts))
            say(
                f"{child.name} exited with {code}; restarting it in {delay:g} s "
                f"(restart {len(restarts)} of at most {self.policy.limit} within {self.policy.window:g} s)"
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=delay)
                return
            await self.spawn(child)
            say(f"{child.name} restarted (pid {child.proc.pid})")
            if child.ready_url:
                self.reports.append(asyncio.create_task(self._report_ready(child.name, child.ready_url)))

    async def _report_ready(self, name: str, url: str) -> None:
        # Long: a restarted copy imports everything again, which takes minutes on a busy small machine.
        if await _wait_ready(url, timeout=600):
            say(f"{name} is ready again")

    async def watch_exit(self, child: Child) -> None:
        """For a child that must not die: raise :class:`CrashLoop` when it exits unasked."""
        assert child.proc is not None
        code = await child.proc.wait()
        if not self.stopping.is_set():
            raise CrashLoop(child.name, f"{child.name} exited with {code}; it is not restarted", child.tail)

    async def stop_all(self) -> None:
        self.stopping.set()
        for report in self.reports:
            report.cancel()
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
        await asyncio.gather(*self.pumps, *self.reports, return_exceptions=True)


async def keep_servers_running(
    stack: devstack.Stack, policy: RestartPolicy, stopping: asyncio.Event, every: float = 1.0
) -> None:
    """Watch the embedded Postgres and NATS processes; start a dead one again with the same data and ports.

    The services reconnect by themselves (connection pool pre-ping, NATS client reconnect) and go ready again.
    """
    servers: dict[str, tuple[devstack.Postgres | devstack.Nats, Path]] = {
        "postgres": (stack.postgres, stack.postgres.data_dir / "postgres.log"),
        **{node.data_dir.name: (node, node.data_dir / "nats.log") for node in stack.nodes},  # nats, nats-2, …
    }
    restarts: dict[str, deque[float]] = {name: deque() for name in servers}
    loop = asyncio.get_running_loop()
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=every)
            return
        for name, (server, log_file) in servers.items():
            attempts = restarts[name]
            while not server.alive() and not stopping.is_set():
                now = loop.time()
                attempts.append(now)
                while attempts and attempts[0] < now - policy.window:
                    attempts.popleft()
                if len(attempts) > policy.limit:
                    message = f"embedded {name} keeps dying; giving up after {len(attempts) - 1} restarts"
                    raise CrashLoop(name, message, _tail(log_file))
                delay = policy.delay(len(attempts))
                say(f"embedded {name} is not running; starting it again in {delay:g} s (same data dir and port)")
                await asyncio.sleep(delay)
                try:
                    await asyncio.to_thread(server.start)
                except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
                    say(f"embedded {name} did not start: {exc}")
                    continue
                say(f"embedded {name} is running again at {server.url}")


def _tail(path: Path, lines: int = TAIL_LINES) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


async def _start_sandbox(sup: Supervisor, env: dict[str, str]) -> dict[str, dict[str, str]]:
    root = Path(env.setdefault("LETSBE_SANDBOX_DIR", str(Path(".data/sandbox").resolve())))  # noqa: ASYNC240 - once, at start
    (root / "env.json").unlink(missing_ok=True)
    seen: asyncio.Queue[str | None] = asyncio.Queue()
    child = await sup.spawn(Child("sandbox", "letsbe_sandbox", env), seen)
    async with asyncio.timeout(60):
        while (line := await seen.get()) != "sandbox ready":
            if line is None:  # it exited before it was ready (a bad setting): say why now, not after the timeout
                assert child.proc is not None
                code = await child.proc.wait()
                raise CrashLoop("sandbox", f"sandbox exited with {code} before it was ready", child.tail)
    world = json.loads((root / "env.json").read_text())
    return world["env"]


async def _announce(env: dict[str, str], sandbox: bool, replicas: int = 1) -> None:
    every = [(svc, n) for svc in SERVICES for n in range(1, replicas + 1)]
    ready = await asyncio.gather(*(_wait_ready(f"http://127.0.0.1:{port(s, env, n)}") for s, n in every))
    if sandbox:
        print(SANDBOX_BANNER, flush=True)
    print("LetsBe control plane is up:", flush=True)
    for (svc, n), ok in zip(every, ready, strict=True):
        state = "ready" if ok else "NOT READY (see its log lines)"
        print(f"  {replica_name(svc, n):<15} http://127.0.0.1:{port(svc, env, n)}  (/docs, /readyz, /metrics)  {state}")
    if sandbox:
        vps_dir = Path(env["LETSBE_SANDBOX_DIR"]) / "vps"
        print(
            f"  tenant agents   per order: safety-wrapper and secrets-proxy on each sandbox VPS 127.B.C.x\n"
            f"                  (ports 8200/8100 there; logs in {vps_dir}/<address>/var/log/letsbe/)"
        )
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


def _migrate(database_url: str) -> None:
    from letsbe_platform import migrations

    migrations.upgrade(database_url)


def _report_crash(exc: CrashLoop) -> int:
    say(str(exc))
    if exc.tail:
        say(f"last {len(exc.tail)} lines of {exc.name}'s log:")
        for line in exc.tail:
            print(f"{exc.name:>15} | {line}", file=sys.stderr)
    return 1


async def _supervise(
    env: dict[str, str],
    sandbox: bool,
    policy: RestartPolicy,
    stack: devstack.Stack | None = None,
    replicas: int = 1,
) -> int:
    sup = Supervisor(policy)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: (stop.set(), sup.stopping.set()))
    watchers: list[asyncio.Task[None]] = []
    code = 0
    # The migrations and the sandbox need nothing of each other: they run side by side, the services after both.
    say("applying migrations")
    migrating = asyncio.create_task(asyncio.to_thread(_migrate, env["DATABASE_URL"]))
    try:
        per_service = await _start_sandbox(sup, env) if sandbox else {}
        await migrating
        if sandbox:
            watchers.append(asyncio.create_task(sup.watch_exit(sup.children["sandbox"])))
        for svc in SERVICES:
            for n in range(1, replicas + 1):  # replicas share the database and the durable consumers
                svc_port = port(svc, env, n)
                child = Child(
                    replica_name(svc, n),
                    svc.module,
                    {**env, **per_service.get(svc.name, {}), svc.port_env: str(svc_port)},
                    ready_url=f"http://127.0.0.1:{svc_port}",
                )
                await sup.spawn(child)
                watchers.append(asyncio.create_task(sup.keep_running(child)))
        if stack is not None:
            watchers.append(asyncio.create_task(keep_servers_running(stack, policy, sup.stopping)))
        announce = asyncio.create_task(_announce(env, sandbox, replicas))
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([*watchers, stopper], return_when=asyncio.FIRST_COMPLETED)
        announce.cancel()
        for task in done:
            if task is not stopper and isinstance(exc := task.exception(), CrashLoop):
                code = _report_crash(exc)
            elif task is not stopper and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        if code:
            say("stopping everything")
    except CrashLoop as exc:  # while starting up
        code = _report_crash(exc)
        say("stopping everything")
    finally:
        # A thread cannot be cancelled: wait for the migrations before stopping (their error, if any, is raised above).
        await asyncio.gather(migrating, return_exceptions=True)
        sup.stopping.set()
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        await sup.stop_all()
    return code


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="letsbe-run",
        description=(
            "Start the LetsBe control plane on this machine (what `make run` does): embedded Postgres 16 and NATS "
            "JetStream unless DATABASE_URL and NATS_URL are set, migrations, and every service. A service, Postgres "
            "or NATS that dies is restarted with backoff; a crash loop stops everything. Only one letsbe-run may "
            "use a data folder at a time."
        ),
        epilog="Ports: LETSBE_PG_PORT (54329), LETSBE_NATS_PORT (4229), LETSBE_<SERVICE>_PORT. "
        "Scale: LETSBE_REPLICAS=2 "
        "runs two processes of each service (the second on LETSBE_<SERVICE>_PORT_2, default 100 above), "
        "LETSBE_NATS_CLUSTER=3 a 3-node JetStream cluster with R3 streams (docs/scaling.md). Ctrl-C stops it all.",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("LETSBE_DATA_DIR", ".data")),
        help="where Postgres, NATS and the sandbox keep their data, locked while running (default: $LETSBE_DATA_DIR "
        "or .data)",
    )
    parser.add_argument(
        "--max-restarts",
        type=int,
        default=RestartPolicy.limit,
        help="restarts of one process within --restart-window seconds before it counts as a crash loop "
        f"(default {RestartPolicy.limit})",
    )
    parser.add_argument(
        "--restart-window", type=float, default=RestartPolicy.window, help="seconds (default %(default)s)"
    )
    parser.add_argument(
        "--restart-backoff",
        type=float,
        default=RestartPolicy.backoff,
        help="seconds before the first restart, doubling with each further one (default %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.max_restarts < 0 or args.restart_window <= 0 or args.restart_backoff < 0:
        parser.error("--max-restarts and --restart-backoff must be >= 0 and --restart-window > 0")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    env = dict(os.environ)
    try:
        replicas, nodes = scale(env)
    except ValueError as exc:
        print(f"letsbe-run: {exc}", file=sys.stderr)
        sys.exit(2)
    if nodes > 1:
        env.setdefault("LETSBE_BUS_REPLICAS", "3")
    sandbox = sandbox_wanted(env)
    policy = RestartPolicy(limit=args.max_restarts, window=args.restart_window, backoff=args.restart_backoff)
    root = args.data_dir.resolve()
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(devstack.lock_data_dir(root))
        except devstack.DataDirInUse as exc:
            print(
                f"letsbe-run: {exc}. Stop that one first (Ctrl-C in its terminal) or give this one another "
                "--data-dir / LETSBE_DATA_DIR; nothing was started.",
                file=sys.stderr,
            )
            sys.exit(1)
        env.setdefault("LETSBE_SANDBOX_DIR", str(root / "sandbox"))
        servers = None
        if not (env.get("DATABASE_URL") and env.get("NATS_URL")):
            cluster = f" ({nodes}-node cluster)" if nodes > 1 else ""
            print(f"starting embedded Postgres 16 and NATS JetStream{cluster} (data in {root})", flush=True)
            servers = stack.enter_context(
                devstack.running(
                    root,
                    pg_port=int(env.get("LETSBE_PG_PORT", 54329)),
                    nats_port=int(env.get("LETSBE_NATS_PORT", 4229)),
                    nats_cluster=nodes,
                )
            )
            env.update(servers.client_env())
            print(f"  postgres  {servers.postgres.url}\n  nats      {servers.nats_url}", flush=True)
        code = asyncio.run(_supervise(env, sandbox, policy, servers, replicas))
    sys.exit(code)


if __name__ == "__main__":
    main()
