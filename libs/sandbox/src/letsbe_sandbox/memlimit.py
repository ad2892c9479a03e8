"""Start a tenant agent inside its rendered memory limit, as the tenant's Docker would (``mem_limit`` in compose).

    proc = spawn([sys.executable, "-m", "letsbe_secrets_proxy"], env=env, mem_limit_mb=64, log_path=log)
    ...
    proc.oom_kills()      # how many times the kernel killed something in it for memory (0 is the goal)

Each process gets its own memory cgroup, made under the cgroup this process runs in (so whatever limits that one
has still apply): cgroup v1 (``memory.limit_in_bytes``, and ``memory.memsw.limit_in_bytes`` when swap accounting
is on, so swap is no way out) or cgroup v2 (``memory.max``, ``memory.swap.max``). The process joins it before it
execs (a tiny ``sh`` prelude), so the limit holds from its first byte; children it forks stay in it. When the
process ends, a line in its log says whether the OOM killer ended it, and the cgroup is removed.

Where no cgroup can be made (not root, no memory controller), the process runs without a limit and a warning
says so, in the sandbox's log and in the process's log.
"""

from __future__ import annotations

import logging
import re
import subprocess
import threading
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
# Joins the cgroup named in $1, then becomes the real command: nothing runs outside the limit.
# Joins the cgroup, then becomes the process; PWD is the one variable sh adds to the environment: drop it again.
_JOIN = 'echo $$ > "$1/cgroup.procs" && shift && unset PWD && exec "$@"'


class LimitedProcess(subprocess.Popen[bytes]):
    cgroup: Path | None = None
    mem_limit_mb: int = 0
    _v2: bool = False
    _final: tuple[int, int | None] | None = None  # (OOM kills, peak) read just before the cgroup was removed

    def oom_kills(self) -> int:
        """Processes of this cgroup the kernel's OOM killer ended so far (0 without a cgroup)."""
        if self._final is not None:
            return self._final[0]
        if self.cgroup is None:
            return 0
        name = "memory.events" if self._v2 else "memory.oom_control"
        return _field(self.cgroup / name, "oom_kill")

    def peak_bytes(self) -> int | None:
        """The cgroup's highest memory use (cgroup v1, or v2 kernels with ``memory.peak``)."""
        if self._final is not None:
            return self._final[1]
        if self.cgroup is None:
            return None
        path = self.cgroup / ("memory.peak" if self._v2 else "memory.max_usage_in_bytes")
        try:
            return int(path.read_text())
        except (OSError, ValueError):
            return None


def spawn(argv: Sequence[str], *, env: Mapping[str, str], mem_limit_mb: int | None, log_path: Path
          ) -> subprocess.Popen[bytes]:
    """``argv`` with exactly ``env``, stdout and stderr appended to ``log_path``, in its own session, inside a memory
    cgroup of ``mem_limit_mb`` (None: a service without a limit, started as it is)."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    out = open(log_path, "ab")  # handed to the child, closed below once it has it
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", argv[argv.index("-m") + 1] if "-m" in argv[:-1] else Path(argv[0]).name)
    cgroup, v2, why = None, False, ""
    if mem_limit_mb is not None:
        cgroup, v2, why = _make_cgroup(f"letsbe-{label}-{uuid.uuid4().hex[:8]}", mem_limit_mb)
    try:
        if mem_limit_mb is None:
            cmd = list(argv)
        elif cgroup is None:
            message = f"memory limit NOT enforced ({mem_limit_mb} MB wanted): {why}"
            log.warning("%s: %s", label, message)
            out.write(f"[sandbox] WARNING: {message}\n".encode())
            out.flush()
            cmd = list(argv)
        else:
            out.write(f"[sandbox] memory limit {mem_limit_mb} MB enforced by {cgroup}\n".encode())
            out.flush()
            cmd = ["/bin/sh", "-c", _JOIN, "sh", str(cgroup), *argv]
        proc = LimitedProcess(cmd, env=dict(env), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              start_new_session=True)
    except BaseException:
        if cgroup is not None:
            _remove(cgroup)
        raise
    finally:
        out.close()
    proc.cgroup, proc.mem_limit_mb, proc._v2 = cgroup, mem_limit_mb or 0, v2
    if cgroup is not None:
        threading.Thread(target=_reap, args=(proc, log_path), name=f"memlimit-{proc.pid}", daemon=True).start()
    return proc


def _own_cgroup() -> tuple[Path, bool] | None:
    """The memory cgroup directory of this process, and whether it is cgroup v2."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return CGROUP_ROOT / "memory" / path.lstrip("/"), False
    for line in lines:
        if line.startswith("0::") and (CGROUP_ROOT / "cgroup.controllers").exists():
            return CGROUP_ROOT / line[3:].lstrip("/"), True
    return None


def _make_cgroup(name: str, mem_limit_mb: int) -> tuple[Path | None, bool, str]:
    own = _own_cgroup()
    if own is None:
        return None, False, "no memory cgroup controller on this machine"
    parent, v2 = own
    cgroup = parent / name
    limit = str(mem_limit_mb * 1024 * 1024)
    try:
        cgroup.mkdir()
    except OSError as exc:
        return None, v2, f"cannot create a cgroup under {parent} ({exc.strerror}; root is needed)"
    try:
        if v2:
            (cgroup / "memory.max").write_text(limit)
            if (cgroup / "memory.swap.max").exists():
                (cgroup / "memory.swap.max").write_text("0")
        else:
            (cgroup / "memory.limit_in_bytes").write_text(limit)
            if (cgroup / "memory.memsw.limit_in_bytes").exists():  # swap accounting on: memory + swap <= limit
                (cgroup / "memory.memsw.limit_in_bytes").write_text(limit)
    except OSError as exc:
        _remove(cgroup)
        return None, v2, f"cannot set the limit on {cgroup} ({exc.strerror})"
    return cgroup, v2, ""


def _reap(proc: LimitedProcess, log_path: Path) -> None:
    """When the process ends: say in its log whether the OOM killer ended it, then remove its cgroup."""
    code = proc.wait()
    assert proc.cgroup is not None
    kills, peak = proc.oom_kills(), proc.peak_bytes()
    proc._final = (kills, peak)
    note = f"exited with {code}"
    if kills:
        note = f"KILLED by the kernel's OOM killer ({kills}x) at its {proc.mem_limit_mb} MB limit; " + note
        log.error("%s", f"process {proc.pid} {note}")
    if peak is not None:
        note += f"; memory peak {peak / 2**20:.1f} MB of {proc.mem_limit_mb} MB"
    with open(log_path, "ab") as fh:
        fh.write(f"[sandbox] {note}\n".encode())
    _remove(proc.cgroup)


def _remove(cgroup: Path) -> None:
    """rmdir works once no process is left in it: children the process left behind are moved to the parent."""
    for _ in range(50):
        try:
            cgroup.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            try:
                for pid in (cgroup / "cgroup.procs").read_text().split():
                    (cgroup.parent / "cgroup.procs").write_text(pid)
            except OSError:
                pass
            threading.Event().wait(0.1)
    log.warning("could not remove %s", cgroup)


def _field(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


__all__ = ["LimitedProcess", "spawn"]
