"""A loopback "VPS": a real SSH server (asyncssh) that runs what it receives with real bash in a sandbox root.

What a provisioning script does to the system goes through commands (apt-get, systemctl, docker, ufw, certbot,
useradd, sshd, fail2ban-client, timedatectl, swapon, …). Here those are *recording stand-ins* first on PATH: each
appends its argv to a log and exits 0, unless a test told it to fail, to hang, or to print something. Everything
else (cat, install, mkdir, flock, openssl, awk, …) is the real tool, so the scripts' own logic runs for real.

Scripts address system paths as ``"$ROOT/etc/…"``: ``ROOT`` is empty in production and this target's ``root``
in tests, so the same script text runs against a real server and against this sandbox.

    with SshTarget() as target:
        target.fail("apt-get", message="E: Could not get lock /var/lib/dpkg/lock-frontend", times=1)
        ...  # connect to target.host:target.port as target.user with target.client_key, pin target.fingerprint
        target.calls("docker")  # -> [["docker", "compose", ...], ...]
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import asyncssh

from letsbe_platform.testing import free_port

STANDINS = (
    "apt-get", "apt-mark", "dpkg", "systemctl", "service", "docker", "ufw", "certbot", "useradd", "usermod",
    "passwd", "chpasswd", "sshd", "fail2ban-client", "timedatectl", "swapon", "mkswap", "fallocate", "sysctl",
    "nproc", "df", "curl", "gpg", "nginx", "rclone", "reboot", "sudo",
)  # fmt: skip

DEBIAN_12 = """PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
"""

_STANDIN = r"""#!/usr/bin/env bash
# Recording stand-in (letsbe_fakes.ssh_target): logs argv, then fails, hangs or prints as the test asked.
ctl=__CTL__
name=__NAME__
{ printf '%s' "$name"; for a in "$@"; do printf ' %q' "$a"; done; printf '\n'; } >>"$ctl/calls.log"
# `docker exec -i` hands its stdin to the container (a restore's dump): read all of it, as the real one does; a
# stand-in that exits first breaks the writer's pipe (now and then, on a loaded machine).
if [ "$name" = docker ] && [[ " $* " == *" -i "* ]]; then cat >/dev/null; fi
if [ -f "$ctl/sleep/$name" ]; then sleep "$(cat "$ctl/sleep/$name")"; fi
if [ -f "$ctl/hold/$name" ] && [[ "$*" == *"$(cat "$ctl/hold/$name")"* ]]; then
  while [ -f "$ctl/hold/$name" ]; do sleep 0.05; done
fi
if [ -f "$ctl/fail/$name" ]; then
  match=""
  [ -f "$ctl/fail/$name.match" ] && match=$(cat "$ctl/fail/$name.match")
  if [ -z "$match" ] || [[ "$*" == *"$match"* ]]; then
    read -r code times <"$ctl/fail/$name"
    if [ "$times" != inf ]; then
      times=$((times - 1))
      if [ "$times" -le 0 ]; then rm -f "$ctl/fail/$name"; else echo "$code $times" >"$ctl/fail/$name"; fi
    fi
    [ -f "$ctl/fail/$name.msg" ] && cat "$ctl/fail/$name.msg" >&2
    exit "$code"
  fi
fi
[ -f "$ctl/out/$name" ] && cat "$ctl/out/$name"
__TAIL__
"""

# sudo runs the rest of its command line (we are already the sandbox's "root").
_SUDO_TAIL = """while [ $# -gt 0 ]; do
  case "$1" in -n|-E|-H) shift ;; -u) shift 2 ;; --) shift; break ;; *) break ;; esac
done
exec "$@"
"""


def _socket_file(path: Path) -> None:
    """A unix socket file at ``path`` (bound through the directory's fd: socket paths are limited to ~100 bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(f"/proc/self/fd/{fd}/{path.name}")
    finally:
        os.close(fd)


class SshTarget:
    """A key-only SSH server on 127.0.0.1 with a generated host key, running commands in a sandbox root."""

    def __init__(
        self,
        root: Path | str | None = None,
        *,
        user: str = "letsbe",
        cpus: int = 4,
        mem_mb: int = 8192,
        disk_gb: int = 256,
        os_release: str = DEBIAN_12,
        host: str = "127.0.0.1",
        port: int | None = None,
        host_key: asyncssh.SSHKey | None = None,
        client_key: asyncssh.SSHKey | None = None,
    ):
        # port/host_key/client_key given: the same "server" across restarts (the sandbox of `make run` keeps its
        # pool servers, whose host keys the hub pinned, in .data/).
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="letsbe-ssh-target-")).resolve()
        self.user = user
        self.host = host
        self.port = port or free_port(host)
        self.host_key = host_key or asyncssh.generate_private_key("ssh-ed25519")
        self.client_key = client_key or asyncssh.generate_private_key("ssh-ed25519")
        self.bin = self.root / ".standins" / "bin"
        self.ctl = self.root / ".standins" / "ctl"
        self._layout(cpus=cpus, mem_mb=mem_mb, disk_gb=disk_gb, os_release=os_release)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncssh.SSHAcceptor | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self.sessions = 0  # commands run, for tests that count round trips
        self.command_seconds = 0.0  # wall time the commands ran (the benchmark tells their work from waiting)
        self.command_spans: list[tuple[float, float]] = []  # each command's start and end, wall clock (the same)
        # Called (in the server's thread) as each command ends: whoever watches what commands did looks now.
        self.on_command_end: Callable[[], None] | None = None

    # --- what a test reads and controls --------------------------------------------------------------------------

    @property
    def fingerprint(self) -> str:
        """``SHA256:…`` as ssh-keygen -lf prints it: what allocation pins in ServerTarget.host_key_fingerprint."""
        return self.host_key.get_fingerprint("sha256")

    @property
    def client_key_openssh(self) -> str:
        """The private key the provisioner authenticates with (OpenSSH format)."""
        return self.client_key.export_private_key("openssh").decode()

    def write_client_key(self, path: Path | str) -> Path:
        path = Path(path)
        path.write_text(self.client_key_openssh)
        path.chmod(0o600)
        return path

    def calls(self, name: str | None = None, containing: str | None = None) -> list[list[str]]:
        """Every stand-in call so far, in order, as argv lists (optionally only those of one command, or only the
        lines holding ``containing``: the rest are not parsed)."""
        log = self.ctl / "calls.log"
        if not log.exists():
            return []
        out = []
        for line in log.read_text().splitlines():
            if containing is not None and containing not in line:
                continue
            try:
                argv = shlex.split(line)
            except ValueError:
                argv = line.split(" ")
            if argv and (name is None or argv[0] == name):
                out.append(argv)
        return out

    def clear_calls(self) -> None:
        (self.ctl / "calls.log").write_text("")

    def fail(
        self, name: str, *, exit_code: int = 1, times: int | None = None, message: str = "", match: str | None = None
    ) -> None:
        """Make stand-in ``name`` exit ``exit_code`` (``times`` times, or until cleared), printing ``message`` on
        stderr; with ``match``, only calls whose arguments contain that text fail."""
        self._check(name)
        d = self.ctl / "fail"
        (d / f"{name}.msg").write_text(message + ("\n" if message and not message.endswith("\n") else ""))
        if match is not None:
            (d / f"{name}.match").write_text(match)
        else:
            (d / f"{name}.match").unlink(missing_ok=True)
        (d / name).write_text(f"{exit_code} {times if times is not None else 'inf'}\n")

    def hang(self, name: str, seconds: float) -> None:
        """Make stand-in ``name`` sleep before it does anything else (to catch a step mid-run)."""
        self._check(name)
        (self.ctl / "sleep" / name).write_text(f"{seconds}\n")

    def hold(self, name: str, match: str = "") -> None:
        """Make stand-in ``name`` wait before it does anything else until :meth:`release` (to catch a step mid-run
        for as long as a test needs); with ``match``, only calls whose arguments contain that text wait."""
        self._check(name)
        (self.ctl / "hold" / name).write_text(match)

    def release(self, name: str) -> None:
        (self.ctl / "hold" / name).unlink(missing_ok=True)

    def output(self, name: str, text: str) -> None:
        """What stand-in ``name`` prints on stdout when it succeeds."""
        self._check(name)
        (self.ctl / "out" / name).write_text(text)

    def clear(self, name: str) -> None:
        for p in (
            self.ctl / "fail" / name,
            self.ctl / "fail" / f"{name}.msg",
            self.ctl / "fail" / f"{name}.match",
            self.ctl / "sleep" / name,
            self.ctl / "hold" / name,
        ):
            p.unlink(missing_ok=True)

    def path(self, system_path: str) -> Path:
        """Where ``/etc/…`` of the "server" lives in the sandbox."""
        return self.root / system_path.lstrip("/")

    # --- lifecycle ------------------------------------------------------------------------------------------------

    def start(self) -> SshTarget:
        self._thread = threading.Thread(target=self._run, name=f"ssh-target-{self.port}", daemon=True)
        self._thread.start()
        if not self._started.wait(10) or self._error is not None:
            raise RuntimeError(f"ssh target did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            loop, server = self._loop, self._server

            async def close() -> None:
                server.close()
                await server.wait_closed()
                for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                    task.cancel()

            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(close(), loop).result(5)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> SshTarget:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- internals ------------------------------------------------------------------------------------------------

    def _check(self, name: str) -> None:
        if name not in STANDINS:
            raise ValueError(f"{name!r} is not a stand-in; known: {', '.join(STANDINS)}")

    def _layout(self, *, cpus: int, mem_mb: int, disk_gb: int, os_release: str) -> None:
        for d in (
            "etc/ssh/sshd_config.d",
            "etc/apt/apt.conf.d",
            "etc/cron.d",
            "etc/docker",
            "proc",
            "run/lock",
            "opt",
            "usr/local/bin",
            "usr/local/lib",
            "var/lib",
            "var/log",
            "var/backups",
            "tmp",
        ):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        (self.root / "etc/os-release").write_text(os_release)
        (self.root / "etc/fstab").touch()
        (self.root / "proc/meminfo").write_text(
            f"MemTotal:       {mem_mb * 1024} kB\nMemFree:        {mem_mb * 900} kB\n"
        )
        for d in ("fail", "sleep", "hold", "out"):
            (self.ctl / d).mkdir(parents=True, exist_ok=True)
        self.bin.mkdir(parents=True, exist_ok=True)
        (self.ctl / "calls.log").touch()
        for name in STANDINS:
            body = (
                _STANDIN.replace("__CTL__", shlex.quote(str(self.ctl)))
                .replace("__NAME__", shlex.quote(name))
                .replace("__TAIL__", _SUDO_TAIL if name == "sudo" else "exit 0")
            )
            p = self.bin / name
            p.write_text(body)
            p.chmod(0o755)
        # What a server with Docker running has (step 10 reads the socket's group); nothing listens behind it here.
        _socket_file(self.root / "var/run/docker.sock")
        self.output("nproc", f"{cpus}\n")
        kb = disk_gb * 1024 * 1024
        self.output(
            "df",
            f"Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/vda1 {kb} 1048576 {kb - 1048576} 1% /\n",
        )

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LETSBE_", "DATABASE_URL", "NATS_URL"))}
        env.update(
            PATH=f"{self.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            HOME=str(self.root),
            LETSBE_SANDBOX_ROOT=str(self.root),
            TMPDIR=str(self.root / "tmp"),
            LC_ALL="C.UTF-8",
        )
        return env

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(self._listen())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._started.set()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _listen(self) -> asyncssh.SSHAcceptor:
        target = self

        class Server(asyncssh.SSHServer):
            def begin_auth(self, username: str) -> bool:
                return True

            def password_auth_supported(self) -> bool:
                return False

            def public_key_auth_supported(self) -> bool:
                return True

            def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
                return username == target.user and key.public_data == target.client_key.public_data

        return await asyncssh.create_server(
            Server,
            self.host,
            self.port,
            server_host_keys=[self.host_key],
            process_factory=self._session,
            encoding=None,
            allow_scp=False,
            sftp_factory=None,
        )

    async def _session(self, process: asyncssh.SSHServerProcess) -> None:
        self.sessions += 1
        started, started_at = time.monotonic(), time.time()
        proc = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            process.command or "exit 0",
            cwd=self.root,
            env=self._env(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )

        async def pump_in() -> None:
            assert proc.stdin is not None
            try:
                while chunk := await process.stdin.read(65536):
                    proc.stdin.write(chunk)
                    await proc.stdin.drain()
            except (asyncssh.Error, OSError, BrokenPipeError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    proc.stdin.close()

        async def pump_out(src: asyncio.StreamReader, dst: asyncssh.SSHWriter) -> None:
            while chunk := await src.read(65536):
                dst.write(chunk)
                await dst.drain()

        feeder = asyncio.create_task(pump_in())
        outputs = asyncio.ensure_future(
            asyncio.gather(pump_out(proc.stdout, process.stdout), pump_out(proc.stderr, process.stderr))
        )
        hangup = asyncio.ensure_future(process.channel.wait_closed())
        try:
            await asyncio.wait({outputs, hangup}, return_when=asyncio.FIRST_COMPLETED)
            if outputs.done() and outputs.exception() is None:
                code = await proc.wait()
                process.exit(code if code >= 0 else 128 - code)
                return
            raise ConnectionResetError("client went away")
        except (asyncssh.Error, OSError, asyncio.CancelledError):
            # The client went away (or the server stops): end the command like a hang-up would.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        finally:
            for t in (feeder, outputs, hangup):
                t.cancel()
            self.command_seconds += time.monotonic() - started
            self.command_spans.append((started_at, time.time()))
            if self.on_command_end is not None:
                self.on_command_end()
