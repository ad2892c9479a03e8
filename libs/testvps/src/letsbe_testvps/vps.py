"""Boot and kill one real Debian 12 system: systemd-nspawn over an overlay of the cached image.

Each VPS gets a slot N (0..63): machine ``lbvpsN``, link ``ve-lbvpsN`` on the host, the /30 10.213.N.0/30 (host end
.1, VPS end .2), its own overlay upper dir under /var/tmp/letsbe-testvps/lbvpsN and a tmpfs for Docker, its own
cgroups in every v1 controller, and a mirror-only HTTP proxy on the host end. Both mounts are made inside a private
mount namespace (``unshare -m``), so they disappear with the nspawn process even if we are killed. ``stop()`` kills
its PID 1 (the kernel then kills every process of its PID namespace: its Docker containers too) and removes what is
left: nothing of a VPS about to be deleted needs a clean shutdown; ``sweep()`` removes what an earlier
run left behind (its owner process gone).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import asyncssh

from letsbe_platform.testing import eventually_blocking
from letsbe_testvps.image import ensure_image, host_mirror
from letsbe_testvps.images import REGISTRY_PORT, start_registry

STATE_DIR = Path("/run/letsbe-testvps")
# On a real file system (not tmpfs): overlay upper dirs of each VPS. Root-owned, ours only.
WORK_DIR = Path(os.environ.get("LETSBE_TESTVPS_WORK", "/var/tmp/letsbe-testvps"))  # noqa: S108
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_NAME = "letsbe-testvps"
CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd")
SLOTS = 64
PROXY_PORT = 3128
BOOT_TIMEOUT = 90.0
INIT = "/usr/local/sbin/letsbe-testvps-init"
# /var/lib/docker of each VPS: a tmpfs in its private mount namespace (Docker's overlay2 cannot sit on the VPS's own
# overlay root). Pulled images are written to memory and vanish with the VPS: no minutes of extracting and deleting
# tens of thousands of files (OpenClaw's image alone has 44 000) on a busy disk. A cap, not a reservation.
DOCKER_TMPFS_SIZE = "8g"


class VpsError(RuntimeError):
    pass


@dataclass
class Vps:
    name: str
    slot: int
    ip: str  # the VPS end of the /30: the address to dial
    host_ip: str  # the host end: where the VPS reaches the apt proxy (and the control plane, for ignoreip)
    nspawn_pid: int
    leader_pid: int  # the VPS's systemd (PID 1 inside)
    proxy_pid: int
    registry_pid: int  # Debian's docker-registry on host_ip:5000 with the image stand-ins (images.py)
    owner_pid: int  # 0: kept until `letsbe-testvps stop`; else removed by sweep() once that process is gone
    host_key_fingerprint: str
    ssh_port: int = 22

    @property
    def registry(self) -> str:
        return f"{self.host_ip}:{REGISTRY_PORT}"

    @property
    def work(self) -> Path:
        return WORK_DIR / self.name

    @property
    def link(self) -> str:
        return f"ve-{self.name}"

    def nsenter(self, *cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a command inside the VPS as root, past SSH (the escape hatch when a step locked us out)."""
        return subprocess.run(
            ["nsenter", "-t", str(self.leader_pid), "-a", *cmd],
            check=check, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def container_pid(self, container: str) -> int:
        """The host's pid of a container's main process inside this VPS: ``nsenter --net=/proc/<pid>/ns/net`` runs a
        program of the host's from that container's network position."""
        inner = int(self.nsenter("docker", "inspect", "-f", "{{.State.Pid}}", container).stdout)
        for status in Path("/proc").glob("[0-9]*/status"):
            with contextlib.suppress(OSError, ValueError):
                fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
                nspids = fields.get("NSpid", "").split()
                if len(nspids) > 2 and int(nspids[1]) == inner and self._descends(int(nspids[0])):
                    return int(nspids[0])
        raise VpsError(f"no process of container {container} (pid {inner} in {self.name}) found on the host")

    def _descends(self, pid: int) -> bool:
        """True if ``pid`` runs under this VPS's systemd (another VPS's processes have the same inner pids)."""
        while pid > 1:
            if pid == self.leader_pid:
                return True
            status = Path(f"/proc/{pid}/status").read_text()
            pid = int(status.split("\nPPid:", 1)[1].split()[0])
        return False

    def save(self) -> None:
        (STATE_DIR / self.name / "state.json").write_text(json.dumps(asdict(self)))

    def stop(self) -> None:
        _stop(self.name, self.nspawn_pid, self.leader_pid, self.proxy_pid, self.registry_pid)


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def _alive(pid: int, needle: str) -> bool:
    """True if ``pid`` runs and its command line contains ``needle`` (guards against a reused pid)."""
    try:
        return needle.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _wait(check, what: str, timeout: float, interval: float = 0.1):
    try:
        return eventually_blocking(check, what, timeout=timeout, every=interval)
    except AssertionError as exc:
        raise VpsError(str(exc)) from None


# --- cgroups (v1): one per VPS in every controller, so nspawn's and dockerd's cgroups nest there ----------------


def _cgroup_dirs(name: str) -> list[Path]:
    return [CGROUP_ROOT / c / CGROUP_NAME / name for c in CONTROLLERS if (CGROUP_ROOT / c).is_dir()]


def _make_cgroups(name: str) -> None:
    for c in CONTROLLERS:
        base = CGROUP_ROOT / c
        if not base.is_dir():
            continue
        parent, own = base / CGROUP_NAME, base / CGROUP_NAME / name
        for d, up in ((parent, base), (own, parent)):
            d.mkdir(exist_ok=True)
            if c == "cpuset":  # an empty cpuset cannot take processes
                for f in ("cpuset.cpus", "cpuset.mems"):
                    if not (d / f).read_text().strip():
                        (d / f).write_text((up / f).read_text())


def _remove_cgroups(name: str) -> None:
    for top in _cgroup_dirs(name):
        if not top.exists():
            continue
        nested = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
        for d in [*nested, top]:  # leaves first
            for _ in range(50):
                procs = [int(p) for p in (d / "cgroup.procs").read_text().split()] if d.exists() else []
                for pid in procs:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)


# --- boot / stop -----------------------------------------------------------------------------------------------


def _claim_slot(owner_pid: int) -> tuple[int, str]:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    for n in range(SLOTS):
        try:
            (STATE_DIR / f"lbvps{n}").mkdir()
        except FileExistsError:
            continue
        (STATE_DIR / f"lbvps{n}" / "owner").write_text(str(owner_pid))
        return n, f"lbvps{n}"
    raise VpsError(f"all {SLOTS} test VPS slots are in use (see {STATE_DIR}; `letsbe-testvps stop --all`)")


def _prepare_upper(work: Path, name: str, public_key: str, host_ip: str) -> str:
    """Files this VPS has that the image must not: host keys, root's authorized key, the apt proxy, its name."""
    upper = work / "upper"
    for d in ("upper", "work", "root"):
        (work / d).mkdir(parents=True, exist_ok=True)
    for d, mode in (("etc", 0o755), ("etc/ssh", 0o755), ("etc/apt", 0o755), ("etc/apt/apt.conf.d", 0o755),
                    ("root", 0o700), ("root/.ssh", 0o700), ("usr", 0o755), ("usr/local", 0o755),
                    ("usr/local/sbin", 0o755)):  # fmt: skip
        (upper / d).mkdir(mode=mode, exist_ok=True)
        os.chmod(upper / d, mode)
    key = upper / "etc/ssh/ssh_host_ed25519_key"
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{name}", "-f", str(key))
    (upper / "root/.ssh/authorized_keys").write_text(public_key.strip() + "\n")
    os.chmod(upper / "root/.ssh/authorized_keys", 0o600)
    (upper / "etc/apt/apt.conf.d/01letsbe-testvps-proxy").write_text(
        f"// letsbe-testvps: the VPS has no route out; apt goes through the mirror-only proxy on the host\n"
        f'Acquire::http::Proxy "http://{host_ip}:{PROXY_PORT}";\n'
    )
    (upper / "etc/hostname").write_text(f"{name}\n")
    (upper / "etc/hosts").write_text(
        f"127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    )
    (upper / "etc/resolv.conf").write_text("# letsbe-testvps: no resolver (no network but the apt proxy)\n")
    init = upper / INIT.lstrip("/")
    # nspawn mounts the v1 controllers read-only and dockerd inside needs to make its own cgroups. Remounting them
    # from the host while systemd booted was the one thing racing its first units (in CI, now and then one of them
    # failed with no output and the VPS booted "degraded"); done here, before systemd starts, nothing races it.
    controllers = " ".join(CONTROLLERS[:-1])
    init.write_text(
        "#!/bin/sh\n# letsbe-testvps: PID 1 until systemd (see vps.py)\n"
        f"for c in {controllers}; do [ -d /sys/fs/cgroup/$c ] && mount -o remount,bind,rw /sys/fs/cgroup/$c; done\n"
        'exec /lib/systemd/systemd "$@"\n'
    )
    os.chmod(init, 0o755)  # noqa: S103 - PID 1's executable, as /sbin's are
    return asyncssh.read_public_key(str(key) + ".pub").get_fingerprint("sha256")


def _launch_script(name: str, image: Path, work: Path) -> str:
    procs = " ".join(shlex.quote(str(d / "cgroup.procs")) for d in _cgroup_dirs(name))
    root = shlex.quote(str(work / "root"))
    inner = (
        f"mount -t overlay overlay -o lowerdir={image},upperdir={work / 'upper'},workdir={work / 'work'} {root} && "
        f"mkdir -p {root}/var/lib/docker && "
        f"mount -t tmpfs -o size={DOCKER_TMPFS_SIZE},mode=0710 tmpfs {root}/var/lib/docker && "
        f"exec systemd-nspawn -D {root} -M {name} --kill-signal=SIGRTMIN+3 --register=no --keep-unit --network-veth "
        "--capability=all --system-call-filter='@keyring bpf' --console=read-only --resolv-conf=off "
        f"--link-journal=no --timezone=off {INIT}"
    )  # as --boot would, but with our PID 1 first (INIT)
    return (
        f'for f in {procs}; do echo $$ >"$f"; done\nexec unshare -m --propagation private sh -c {shlex.quote(inner)}\n'
    )


def _children(pid: int) -> list[str]:
    try:
        return [c for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]
    except OSError:
        return []


def _leader(nspawn_pid: int) -> int | None:
    try:
        return next((int(c) for c in _children(nspawn_pid)
                     if Path(f"/proc/{c}/comm").read_text().strip() == "systemd"), None)  # fmt: skip
    except OSError:
        return None


def _routed_via(ip: str, link: str) -> bool:
    out = _run("ip", "-o", "route", "get", ip, check=False).stdout
    return f" dev {link} " in out


def _ssh_banner(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=2) as s:
            s.settimeout(2)
            return s.recv(64).startswith(b"SSH-2.0-")
    except OSError:
        return False


def boot(public_key: str, *, owner_pid: int | None = None, log=print) -> Vps:
    """A freshly booted Debian 12 VPS with sshd answering and root's ``authorized_keys`` = ``public_key``."""
    if os.geteuid() != 0:
        raise VpsError("the test VPS needs root (systemd-nspawn, overlay mounts, cgroups, veth)")
    mirror = host_mirror()
    image = ensure_image(mirror, log=log)
    owner = os.getpid() if owner_pid is None else owner_pid
    slot, name = _claim_slot(owner)
    work = WORK_DIR / name
    ip, host_ip, link = f"10.213.{slot}.2", f"10.213.{slot}.1", f"ve-{name}"
    nspawn_pid = leader = proxy_pid = registry_pid = 0
    try:
        shutil.rmtree(work, ignore_errors=True)
        fingerprint = _prepare_upper(work, name, public_key, host_ip)
        _make_cgroups(name)
        console = open(work / "console.log", "wb")
        nspawn = subprocess.Popen(
            ["sh", "-c", _launch_script(name, image, work)],
            stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        console.close()
        nspawn_pid = nspawn.pid
        (STATE_DIR / name / "nspawn.pid").write_text(str(nspawn_pid))

        def started() -> int | None:
            if nspawn.poll() is not None:
                raise VpsError(f"systemd-nspawn exited ({nspawn.returncode}): {_tail(work / 'console.log')}")
            return _leader(nspawn_pid) if Path(f"/sys/class/net/{link}").exists() else None

        leader = _wait(started, f"{name} to start", 30)
        _run("ip", "addr", "add", f"{host_ip}/30", "dev", link)
        _run("ip", "link", "set", link, "up")
        _run("nsenter", "-t", str(leader), "-n", "ip", "addr", "add", f"{ip}/30", "dev", "host0")
        _run("nsenter", "-t", str(leader), "-n", "ip", "link", "set", "host0", "up")
        proxy = subprocess.Popen(
            [sys.executable, "-m", "letsbe_testvps.proxy", host_ip, str(PROXY_PORT), *mirror.hosts],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(work / "proxy.log", "wb"),
            start_new_session=True,
        )  # fmt: skip
        proxy_pid = proxy.pid
        (STATE_DIR / name / "proxy.pid").write_text(str(proxy_pid))
        registry_pid = start_registry(host_ip, REGISTRY_PORT, work / "registry.log").pid
        (STATE_DIR / name / "registry.pid").write_text(str(registry_pid))
        vps = Vps(name, slot, ip, host_ip, nspawn_pid, leader, proxy_pid, registry_pid, owner, fingerprint)
        vps.save()
        # Dial it only when the kernel routes its address over its own link: never anywhere else.
        _wait(lambda: _routed_via(ip, link), f"a route to {ip} via {link}", 10)
        _wait(lambda: _ssh_banner(ip, 22), f"sshd on {name} ({ip}:22)", BOOT_TIMEOUT, 0.2)
        state = vps.nsenter("systemctl", "is-system-running", "--wait", check=False, timeout=BOOT_TIMEOUT).stdout
        failed = ""
        if state.strip() != "running":  # name what failed: a degraded boot is otherwise a guess
            listed = vps.nsenter("systemctl", "--failed", "--plain", "--no-legend", check=False, timeout=30).stdout
            units = [line.split()[0] for line in listed.splitlines() if line.strip()]
            why = (("systemctl", "show", "-p", "Result", "-p", "ExecMainStatus"),
                   ("journalctl", "-b", "-n", "6", "-o", "cat", "--no-pager", "-u"))  # fmt: skip
            said = [
                " | ".join(vps.nsenter(*c, u, check=False, timeout=30).stdout.strip().replace("\n", " | ") for c in why)
                for u in units
            ]  # and why each failed: the unit's name alone did not explain a failure seen once in a while
            failed = f" (failed: {'; '.join(f'{u}: {s}' for u, s in zip(units, said, strict=True))})"
        log(f"{name} booted: {ip}, systemd {state.strip()}{failed}, host key {fingerprint}")
        return vps
    except BaseException:
        _stop(name, nspawn_pid, leader, proxy_pid, registry_pid)
        raise


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _born(pid: int) -> str | None:
    """When ``pid`` started (``/proc/<pid>/stat`` field 22), None if there is no such process: with the pid it names
    one process, not whichever later reuses the number."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _gone(pid: int, born: str | None, timeout: float) -> None:
    """Wait until the process ``pid`` started at ``born`` is gone from the host, reaping it if it is our child.

    Its command line empties when it starts exiting, but it stays until its namespaces and mounts are torn down and
    its parent collects it: on a loaded machine that took over a second, and "stopped" must mean gone."""
    if born is None:
        return

    def gone() -> bool:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        return _born(pid) != born

    _wait(gone, f"process {pid} to go away", timeout, interval=0.02)


def _exiting(pid: int) -> bool:
    """True if ``pid`` is a zombie or a user process past releasing its memory (its command line reads empty)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        if "\nState:\tZ" in status:
            return True
        parent = int(status.split("\nPPid:", 1)[1].split()[0])
        return parent not in (0, 2) and not Path(f"/proc/{pid}/cmdline").read_bytes()  # 2: kthreadd's threads
    except (OSError, IndexError, ValueError):
        return False


def _end(pid: int, needle: str, timeout: float, signal_to: tuple[int, int] | None = None) -> None:
    """End ``pid`` (SIGTERM, or ``signal_to`` = (pid, signal) to ask another process), SIGKILL after ``timeout``;
    return once it is gone."""
    if not pid:
        return
    born = _born(pid)
    if _alive(pid, needle):
        target, sig = signal_to or (pid, signal.SIGTERM)
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, sig)
        try:
            _wait(lambda: not _alive(pid, needle), f"process {pid} to end", timeout, interval=0.02)
        except VpsError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    elif not _exiting(pid):
        return  # the number names another process now: ours is long gone
    _gone(pid, born, 30)


def _stop(name: str, nspawn_pid: int, leader: int, proxy_pid: int, registry_pid: int, timeout: float = 10.0) -> None:
    """Kill its PID 1 (nspawn then exits), then remove its cgroups, link, files and slot. Idempotent.

    Not a poweroff (SIGRTMIN+4): systemd stopping Docker and its containers took up to 20 s, for a disk that is
    deleted next."""
    _end(proxy_pid, "letsbe_testvps.proxy", 5)
    _end(registry_pid, f"{name}/registry", 5)
    # Only while nspawn runs is ``leader`` surely its PID 1 (else the number may be another process's by now).
    leader = leader if _alive(nspawn_pid, name) and str(leader) in _children(nspawn_pid) else 0
    leader_born = _born(leader) if leader else None
    _end(nspawn_pid, name, timeout, (leader, signal.SIGKILL) if leader else None)
    _remove_cgroups(name)
    _gone(leader, leader_born, 30)  # nspawn reaps it, or init if nspawn was killed
    if Path(f"/sys/class/net/ve-{name}").exists():
        _run("ip", "link", "del", f"ve-{name}", check=False)
    shutil.rmtree(WORK_DIR / name, ignore_errors=True)
    shutil.rmtree(STATE_DIR / name, ignore_errors=True)


def load(name: str) -> Vps:
    try:
        return Vps(**json.loads((STATE_DIR / name / "state.json").read_text()))
    except FileNotFoundError:
        raise VpsError(f"no test VPS named {name}") from None


def running() -> list[str]:
    return sorted(p.name for p in STATE_DIR.glob("lbvps*") if p.is_dir()) if STATE_DIR.exists() else []


def sweep(*, everything: bool = False, log=print) -> list[str]:
    """Remove test VPSes whose owner process is gone (or all of them): leftovers of killed runs."""
    removed = []
    for name in running():
        d = STATE_DIR / name
        owner = int((d / "owner").read_text() or 0) if (d / "owner").exists() else -1
        if not everything and (owner == 0 or (owner > 0 and Path(f"/proc/{owner}").exists())):
            continue
        if owner == -1 and not everything and time.time() - d.stat().st_mtime < 60:
            continue  # being claimed right now
        pids = {f.stem: int(f.read_text() or 0) for f in d.glob("*.pid")}
        nspawn = pids.get("nspawn", 0)
        _stop(name, nspawn, _leader(nspawn) or 0, pids.get("proxy", 0), pids.get("registry", 0))
        removed.append(name)
        log(f"removed leftover test VPS {name}")
    for work in WORK_DIR.glob("lbvps*") if WORK_DIR.exists() else []:  # files of slots whose state is gone
        if not (STATE_DIR / work.name).exists():
            _stop(work.name, 0, 0, 0, 0)
    return removed
