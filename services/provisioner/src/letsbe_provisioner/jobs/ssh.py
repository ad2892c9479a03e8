"""SSH to a tenant server with its host key pinned, and run one step script with live output."""

from __future__ import annotations

import asyncio
import itertools
import shlex
from collections.abc import Awaitable, Callable

import asyncssh

from letsbe_contracts import ServerTarget

MAX_LINE = 7990

LineSink = Callable[[str, str], Awaitable[None]]  # (stream, line)


class HostKeyMismatch(Exception):
    """The server presented another host key than the one captured at allocation: nothing is run."""


class ConnectionFailed(Exception):
    """Could not reach or keep the server (transient: retried)."""


def _pinning_client(expected: str) -> type[asyncssh.SSHClient]:
    class Pinned(asyncssh.SSHClient):
        presented: str | None = None

        def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
            Pinned.presented = key.get_fingerprint("sha256")
            return Pinned.presented == expected

    return Pinned


REFUSED_PAUSES = (0.05, 0.1, 0.2, 0.5)  # seconds between attempts while the port refuses; the last one repeats


async def connect(target: ServerTarget, client_key: asyncssh.SSHKey, *, timeout: float) -> asyncssh.SSHClientConnection:
    """Connect as ``target.ssh_user``; the host key must have ``target.host_key_fingerprint`` (checked during the key
    exchange, before we authenticate or run anything).

    A refused TCP connection is tried again within ``timeout``: the host is up, only sshd is not listening for a
    moment (it re-executes itself on ``systemctl reload ssh``, closing its socket, or it is still starting)."""
    client = _pinning_client(target.host_key_fingerprint)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pauses = itertools.chain(REFUSED_PAUSES, itertools.repeat(REFUSED_PAUSES[-1]))
    try:
        while True:
            try:
                conn, _ = await asyncssh.create_connection(
                    client,
                    str(target.ipv4),
                    target.ssh_port,
                    username=target.ssh_user,
                    client_keys=[client_key],
                    known_hosts=([], [], []),  # no known_hosts file: the pin above is the only trusted key
                    connect_timeout=max(deadline - loop.time(), 0.01),
                    keepalive_interval=15,
                    keepalive_count_max=4,
                    agent_path=None,
                    password=None,
                    kbdint_auth=False,
                    config=None,
                )
                return conn
            except ConnectionRefusedError:
                pause = next(pauses)
                if loop.time() + pause >= deadline:
                    raise
                await asyncio.sleep(pause)
    except asyncssh.HostKeyNotVerifiable as exc:
        raise HostKeyMismatch(
            f"host key mismatch for {target.ipv4}:{target.ssh_port}: expected {target.host_key_fingerprint}, "
            f"the server presented {client.presented or 'an unreadable key'}; refusing to run anything"
        ) from exc
    except asyncssh.PermissionDenied as exc:
        raise ConnectionFailed(f"SSH login as {target.ssh_user} refused: {exc.reason}") from exc
    except (OSError, asyncssh.Error, TimeoutError) as exc:
        raise ConnectionFailed(f"cannot reach {target.ipv4}:{target.ssh_port}: {type(exc).__name__}: {exc}") from exc


USERS_SSH_STEP = 3  # the step that hardens SSH (root refused from then on)


def step_target(server: ServerTarget, step: int, provisioning_user: str) -> ServerTarget:
    """Who logs in for step ``step``. A server handed over as root is provisioned as root up to the SSH hardening
    (which authorizes our key for ``provisioning_user`` and then refuses root), and as ``provisioning_user``
    (passwordless sudo) after it, as on a real server whose root login we closed ourselves."""
    if server.ssh_user == "root" and step > USERS_SSH_STEP:
        return server.model_copy(update={"ssh_user": provisioning_user})
    return server


def remote_command(root: str, user: str) -> str:
    """The command that runs a step script read from stdin.

    The script goes to a 0600 temp file (it may hold secrets: never on a command line), runs with stdin from
    /dev/null (so apt or docker cannot swallow it), under a server-wide lock (a step left running by a provisioner
    that died is waited for, never run twice at once); 75 (EX_TEMPFAIL) tells us to retry later.
    """
    lock = shlex.quote(f"{root}/run/lock/letsbe-provision.lock")
    inner = (
        f"umask 077; mkdir -p {shlex.quote(root + '/run/lock')}; exec 9>{lock}; "
        "flock -w 600 9 || { echo 'another provisioning step still holds the server lock' >&2; exit 75; }; "
        'f=$(mktemp); trap \'rm -f "$f"\' EXIT; cat >"$f"; bash -euo pipefail "$f" </dev/null'
    )
    cmd = f"bash -c {shlex.quote(inner)}"
    return cmd if user == "root" else f"sudo -n {cmd}"


async def run_script(
    conn: asyncssh.SSHClientConnection, script: str, *, root: str, user: str, on_line: LineSink, timeout: float
) -> int:
    """Run ``script``; every output line goes to ``on_line`` as it arrives. Returns the exit status."""
    try:
        process = await conn.create_process(remote_command(root, user), encoding="utf-8", errors="replace")
    except (OSError, asyncssh.Error) as exc:
        raise ConnectionFailed(f"cannot start a command: {type(exc).__name__}: {exc}") from exc

    async def pump(reader: asyncssh.SSHReader[str], stream: str) -> None:
        while True:
            line = await reader.readline()
            if not line:
                return
            line = line.rstrip("\n").rstrip("\r")
            await on_line(stream, line if len(line) <= MAX_LINE else line[:MAX_LINE] + " …")

    try:
        process.stdin.write(script)
        process.stdin.write_eof()
        async with asyncio.timeout(timeout):
            await asyncio.gather(pump(process.stdout, "stdout"), pump(process.stderr, "stderr"))
            result = await process.wait()
    except TimeoutError:
        process.close()
        raise
    except (OSError, asyncssh.Error) as exc:
        raise ConnectionFailed(f"connection lost during the step: {type(exc).__name__}: {exc}") from exc
    if result.exit_status is None:  # killed by a signal, or the channel closed under us
        raise ConnectionFailed(f"the step ended without an exit status ({result.exit_signal or 'channel closed'})")
    return result.exit_status
