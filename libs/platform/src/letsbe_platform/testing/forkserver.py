"""Start control-plane service processes for tests by forking them from a server that has already imported the
third-party libraries every service loads (as ``gunicorn --preload`` and multiprocessing's forkserver do).

A service's own start is mostly imports: ``python -m letsbe_hub`` spends ~5 s of CPU on this kind of machine before
it listens, ~3 s of it in SQLAlchemy, FastAPI, pydantic, asyncssh, stripe and the like. A forked child is still a
real process of its own (its pid, its environment, its log file, kill -9 ends it) and imports all of *our* code
fresh, after its environment is set, exactly as ``python -m`` would; only the libraries' import is shared.

The server is this file run by path (so no package of ours is imported in it), one per test process, started on
first use. Its children are its own, so it reaps them and keeps their exit codes for :class:`ForkedProcess`, by the
number of the spawn, not by pid: over a whole suite the kernel hands out every pid again (pid_max is 32768), and a
new child must never be answered with the exit code of an old one that had its pid.
Tenant agents are never started this way: a tenant runs them with ``python -m``, and their memory and import budgets
are measured on exactly that.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import itertools
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# Libraries the control-plane services import at start; none reads our settings or starts a thread on import.
PRELOAD = (
    "sqlalchemy.ext.asyncio",
    "sqlalchemy.orm",
    "sqlalchemy.dialects.postgresql.asyncpg",
    "asyncpg",
    "fastapi",
    "starlette",
    "sse_starlette",
    "pydantic",
    "pydantic_settings",
    "nats",
    "nats.js",
    "structlog",
    "uvicorn",
    "httpx",
    "asyncssh",
    "stripe",
    "jinja2",
    "prometheus_client",
    "cryptography.fernet",
)


# --- the server (runs in its own process: `python forkserver.py SOCKET`) ---


def _serve(path: str) -> None:
    sys.path[0] = os.getcwd()  # run by path, this file's folder came first; `python -m` puts the working directory
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    # What the libraries built lives as long as every child: out of the collector's sight, so no child's collection
    # walks it again (nor marks each of its objects, which copies the pages the children share).
    gc.collect()
    gc.freeze()
    parent = os.getppid()
    running: dict[int, int] = {}  # pid -> spawn number, of children not yet reaped
    exits: dict[int, int] = {}  # spawn number -> exit code
    spawns = itertools.count()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while os.getppid() == parent:  # the test process that started us is gone: so are we
        readable, _, _ = select.select([listener], [], [], 0.05)
        _reap(running, exits)
        if not readable:
            continue
        conn, _ = listener.accept()
        with conn:
            request = json.loads(conn.makefile("rb").readline())
            if request["op"] == "spawn":
                pid = os.fork()
                if pid == 0:
                    listener.close()
                    conn.close()
                    _child(request)  # never returns
                spawn = running[pid] = next(spawns)
                answer: dict[str, object] = {"pid": pid, "spawn": spawn}
            else:
                _reap(running, exits)
                answer = {"code": exits.get(request["spawn"])}
            conn.sendall(json.dumps(answer).encode() + b"\n")


def _reap(running: dict[int, int], exits: dict[int, int]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        spawn = running.pop(pid, None)  # None: not a child it forked (none is expected; never crash on one)
        if spawn is not None:
            exits[spawn] = os.waitstatus_to_exitcode(status)


def _child(request: dict) -> None:
    """Become ``python -m <module>`` with the request's environment, working directory and log file."""
    import runpy
    import traceback

    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    extra = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:1] = [request["cwd"], *extra]
    sys.argv = ["-m"]  # run_module puts the module's path here, as `python -m` does
    code = 0
    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(BaseException):
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


# --- the client (in the test process) ---


class _Server:
    """The test process's fork server, started on first use and stopped when the test process exits."""

    _lock = threading.Lock()
    _path: str | None = None
    _proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def ask(cls, request: dict) -> dict:
        with cls._lock:
            if cls._proc is None or cls._proc.poll() is not None:
                cls._start()
        assert cls._path is not None
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(cls._path)
            s.sendall(json.dumps(request).encode() + b"\n")
            return json.loads(s.makefile("rb").readline())

    @classmethod
    def _start(cls) -> None:
        cls._path = str(Path(tempfile.mkdtemp(prefix="lbfork-")) / "s")
        cls._proc = subprocess.Popen(
            [sys.executable, __file__, cls._path], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        assert cls._proc.stdout is not None
        if cls._proc.stdout.readline() != b"ready\n":
            raise RuntimeError(f"the test fork server did not start (exit {cls._proc.wait()})")
        atexit.register(cls._stop)

    @classmethod
    def _stop(cls) -> None:
        if cls._proc is not None and cls._proc.poll() is None:
            cls._proc.kill()
            cls._proc.wait()


class ForkedProcess:
    """What tests use of ``subprocess.Popen`` (pid, poll, wait, signals, returncode) for a forked service."""

    def __init__(self, module: str, env: dict[str, str], log_path: Path):
        self.returncode: int | None = None
        answer = _Server.ask({"op": "spawn", "module": module, "env": env, "log": str(log_path), "cwd": os.getcwd()})
        self.pid: int = answer["pid"]
        self._spawn: int = answer["spawn"]

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = _Server.ask({"op": "status", "spawn": self._spawn})["code"]
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"{self.pid}", timeout or 0)
            time.sleep(0.02)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


if __name__ == "__main__":
    _serve(sys.argv[1])
