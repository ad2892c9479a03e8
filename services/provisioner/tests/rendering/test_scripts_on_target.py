"""The rendered scripts run for real (bash, coreutils, jq, openssl, curl) in the loopback target's sandbox."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from letsbe_contracts import Tier
from letsbe_contracts.events import BackupStatus
from letsbe_fakes.ssh_target import SshTarget
from letsbe_provisioner.jobs import ssh
from letsbe_provisioner.steps import STEPS
from provisioner_testing import TOKENS, plan_for, shell_env, write_step

from ..conftest import server_target


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (by its path there; the root itself lives under /tmp, so only parts below it count)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not {".standins", "tmp"} & set(p.relative_to(root).parts)
    }


async def run(conn: asyncssh.SSHClientConnection, script: str, target: SshTarget) -> tuple[int, list[str]]:
    lines: list[str] = []

    async def sink(stream: str, line: str) -> None:
        lines.append(f"{stream}: {line}")

    code = await ssh.run_script(conn, script, root=str(target.root), user=target.user, on_line=sink, timeout=30)
    return code, lines


async def test_every_step_can_run_twice_and_the_second_run_changes_nothing(target: SshTarget) -> None:
    plan = plan_for(("nextcloud", "chatwoot", "ghost", "stalwart"), root=str(target.root), tier=Tier.LITE)
    conn = await ssh.connect(server_target(target), target.client_key, timeout=5)
    try:
        for step in STEPS:
            script = plan.step_script(step.number, TOKENS)
            code, first = await run(conn, script, target)
            assert code == 0, f"step {step.number} failed:\n" + "\n".join(first)
            if step.number == 2:
                target.output("swapon", "/swapfile\n")  # the swap is active now, as `swapon --show` would say
            before = snapshot(target.root)
            code, second = await run(conn, script, target)
            assert code == 0, f"step {step.number} failed when run again:\n" + "\n".join(second)
            assert snapshot(target.root) == before, f"step {step.number} changed files on its second run"
            assert not [line for line in second if line.startswith("stdout: wrote ")], step.name
    finally:
        conn.close()
    assert len(target.calls("mkswap")) == 1, "swap is created once"
    assert [c for c in target.calls("swapon") if not c[1].startswith("--")] == [
        ["swapon", str(target.path("/swapfile"))]
    ]
    assert target.path("/etc/fstab").read_text().count("/swapfile") == 1


@pytest.mark.parametrize(
    ("machine", "message"),
    [
        (
            {"os_release": 'PRETTY_NAME="Ubuntu 24.04 LTS"\nID=ubuntu\nVERSION_ID="24.04"\n'},
            "this server runs Ubuntu 24.04 LTS; LetsBe needs Debian 12",
        ),
        # nextcloud: 768 MB stack + 1536 MB LetsBe overhead; 20 GB base + twice its 10 GB; at least 2 CPUs.
        ({"mem_mb": 1024}, "1024 MB RAM, the selected tools need 2304 MB"),
        ({"cpus": 1}, "1 CPUs, the selected tools need 2"),
        ({"disk_gb": 30}, "30 GB disk, the selected tools need 40 GB"),
    ],
)
async def test_preflight_refuses_a_server_that_does_not_match_the_order(
    tmp_path: Path, machine: dict[str, Any], message: str
) -> None:
    with SshTarget(tmp_path / "vps", **machine) as target:
        plan = plan_for(("nextcloud",), root=str(target.root), tier=Tier.LITE)
        conn = await ssh.connect(server_target(target), target.client_key, timeout=5)
        try:
            code, lines = await run(conn, plan.step_script(1), target)
        finally:
            conn.close()
    assert code == 1 and f"stderr: error: {message}" in lines


@pytest.mark.parametrize(("cpus", "min_cpus", "ok"), [(2, None, True), (2, 4, False), (1, 1, True)])
async def test_preflight_judges_the_server_by_what_the_tools_need_not_by_the_tier(
    tmp_path: Path, cpus: int, min_cpus: int | None, ok: bool
) -> None:
    """A Hetzner cx22 (2 vCPU, 4 GB, 40 GB) holds a lite order of nextcloud; the tier's nominal 4 CPUs/8 GB/256 GB
    made every overflow server fail here. ``preflight_min_cpus`` overrides the derived CPU minimum."""
    with SshTarget(tmp_path / "vps", cpus=cpus, mem_mb=4096, disk_gb=40) as target:
        plan = plan_for(("nextcloud",), root=str(target.root), tier=Tier.LITE, preflight_min_cpus=min_cpus)
        conn = await ssh.connect(server_target(target), target.client_key, timeout=5)
        try:
            code, lines = await run(conn, plan.step_script(1), target)
        finally:
            conn.close()
    assert (code == 0) is ok, lines


def test_nightly_backup_writes_backup_status_in_the_seeds_shape(target: SshTarget) -> None:
    plan = plan_for(("nextcloud", "ghost", "uptime_kuma"), root=str(target.root))
    for n in (8, 9):
        write_step(target, plan, n)
    target.output("docker", "-- a database dump --\n")
    target.fail("docker", match="letsbe-ghost-db", message="Error response from daemon: container is restarting")
    result = subprocess.run(
        [str(target.path("/usr/local/sbin/letsbe-backup"))],
        env=shell_env(target),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, "a failed dump makes the run fail for cron monitoring"
    status = BackupStatus.model_validate_json(target.path("/var/lib/letsbe/backup/backup-status.json").read_text())
    assert set(status.databases) == {"nextcloud", "ghost"}, "tools without a database have nothing to dump"
    assert status.databases["nextcloud"].status == "success" and status.databases["nextcloud"].size_mb is not None
    assert status.databases["ghost"].status == "failed" and "container is restarting" in (
        status.databases["ghost"].error or ""
    )
    assert status.remote_sync.status == "skipped"
    dumps = list(target.path("/var/backups/letsbe/daily").rglob("*.gz"))
    assert [p.name for p in dumps] == ["nextcloud.postgres.gz"]
    dump_cmds = [c for c in target.calls("docker") if c[1] == "exec"]
    assert [c[2] for c in dump_cmds] == ["letsbe-ghost-db", "letsbe-nextcloud-db"]


def test_step_10_gives_the_agents_the_docker_sockets_group_of_this_server(target: SshTarget) -> None:
    plan = plan_for(("nextcloud",), root=str(target.root))
    sock = target.path("/var/run/docker.sock")
    os.chown(sock, 0, 4242)  # this server's docker group
    step10 = plan.step_script(10, TOKENS)
    done = subprocess.run(["bash", "-c", step10], env=shell_env(target), capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert target.path("/opt/letsbe/ai/.env").read_text() == "DOCKER_GID=4242\n"  # compose reads it for group_add
    assert [c[:2] for c in target.calls("docker")] == [["docker", "compose"]]

    sock.unlink()  # Docker not running
    failed = subprocess.run(["bash", "-c", step10], env=shell_env(target), capture_output=True, text=True, check=False)
    assert failed.returncode == 1 and "no Docker socket at /var/run/docker.sock" in failed.stderr


def test_tls_stands_in_self_signed_until_the_agent_has_a_credential(target: SshTarget) -> None:
    """The issuance itself, with the agent's real credential, certbot and pebble: tests/acme."""
    plan = plan_for(("nextcloud",), root=str(target.root))
    write_step(target, plan, 7)
    ensure = str(target.path("/usr/local/sbin/letsbe-tls-ensure"))
    first = subprocess.run([ensure], env=shell_env(target), capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    assert "self-signed stand-in" in first.stdout and target.calls("certbot") == []
    cert = subprocess.run(
        [
            "openssl",
            "x509",
            "-noout",
            "-ext",
            "subjectAltName",
            "-in",
            str(target.path("/etc/letsbe/tls/fullchain.pem")),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "DNS:example.com" in cert.stdout and "DNS:*.example.com" in cert.stdout
