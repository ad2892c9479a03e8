"""A tenant's data round-trips: rows written into a tool's database before the nightly backup are there after
``letsbe-restore`` on a new server that had never seen them.

Real here: the rendered ``letsbe-backup`` and ``letsbe-restore`` (bash, gzip, flock, jq), ``pg_dumpall`` and
``psql`` against two real PostgreSQL 16 clusters (one per server: the old one's and the new one's tool database),
and rclone's real copy to and from an off-site remote (rclone's ``local`` backend: a directory standing in for the
bucket), which is how a lost server's backup reaches its replacement.
Not real: Docker. ``docker exec <db container> sh -c …`` runs the same command on this machine with the cluster's
address in the environment, ``docker stop/start`` of the app only records the call. The same scripts run in Docker
on the Debian 12 test VPS against a real PostgreSQL container (``lifecycle_jobs`` in
services/provisioner/tests/vps/test_steps_on_debian.py), without the off-site copy.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from letsbe_fakes.ssh_target import SshTarget
from letsbe_platform.devstack import PG_USER, Postgres, pg_bin_dir
from letsbe_platform.testing import free_port
from provisioner_testing import plan_for, shell_env, write_step

DOCKER = r"""#!/usr/bin/env bash
# docker, for this test: exec runs the command here against this server's PostgreSQL cluster
{ printf 'docker'; for a in "$@"; do printf ' %q' "$a"; done; printf '\n'; } >>__CTL__/calls.log
[ "$1" = exec ] || exit 0
shift
while [ "${1#-}" != "$1" ]; do shift; done
shift  # the container
export PATH=__PGBIN__:$PATH PGHOST=127.0.0.1 PGPORT=__PORT__ POSTGRES_USER=__USER__
exec "$@"
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[SshTarget, Postgres]]:
    """A server (loopback target) whose nextcloud database container is a real PostgreSQL cluster."""
    with SshTarget() as target:
        pg = Postgres(tmp_path / f"pg{target.port}", free_port(), fast=True)
        pg.start()
        try:
            docker = DOCKER.replace("__CTL__", str(target.ctl)).replace("__PGBIN__", str(pg_bin_dir()))
            (target.bin / "docker").write_text(docker.replace("__PORT__", str(pg.port)).replace("__USER__", PG_USER))
            (target.bin / "rclone").unlink()  # the real rclone
            yield target, pg
        finally:
            pg.stop()


def sql(pg: Postgres, db: str, query: str) -> str:
    out = subprocess.run(
        [str(pg_bin_dir() / "psql"), "-X", "-At", "-h", "127.0.0.1", "-p", str(pg.port), "-U", PG_USER, "-d", db,
         "-v", "ON_ERROR_STOP=1", "-c", query],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def run(target: SshTarget, *argv: str) -> subprocess.CompletedProcess[str]:
    script = str(target.path(argv[0]))
    return subprocess.run([script, *argv[1:]], env=shell_env(target), capture_output=True, text=True, check=False)


def install(target: SshTarget, remote: Path) -> None:
    plan = plan_for(("nextcloud", "uptime_kuma"), root=str(target.root))
    for n in (8, 9):
        write_step(target, plan, n)
    # The off-site target: what the backup syncs to and the restore reads from when the set is not local.
    target.path("/etc/letsbe").mkdir(parents=True, exist_ok=True)
    target.path("/etc/letsbe/rclone.conf").write_text("[offsite]\ntype = local\n")
    target.path("/etc/letsbe/backup-remote").write_text(f"offsite:{remote}\n")


def test_rows_written_before_the_backup_are_there_after_a_restore_on_a_new_server(tmp_path: Path, server) -> None:
    old, old_pg = server
    remote = tmp_path / "bucket"
    install(old, remote)
    sql(old_pg, "postgres", "CREATE DATABASE nextcloud")
    sql(old_pg, "nextcloud", "CREATE TABLE files (id int PRIMARY KEY, name text)")
    sql(old_pg, "nextcloud", "INSERT INTO files SELECT i, 'file ' || i FROM generate_series(1, 500) i")

    backup = run(old, "/usr/local/sbin/letsbe-backup")
    assert backup.returncode == 0, backup.stderr

    with SshTarget() as new:  # the replacement server: freshly provisioned, its own (empty) cluster
        new_pg = Postgres(tmp_path / "pg-new", free_port(), fast=True)
        new_pg.start()
        try:
            docker = (old.bin / "docker").read_text().replace(str(old.ctl), str(new.ctl))
            docker = docker.replace(f"PGPORT={old_pg.port}", f"PGPORT={new_pg.port}")
            (new.bin / "docker").write_text(docker)
            (new.bin / "rclone").unlink()
            install(new, remote)
            sql(new_pg, "postgres", "CREATE DATABASE nextcloud")  # what the new tool stack starts with
            sql(new_pg, "nextcloud", "CREATE TABLE files (id int PRIMARY KEY, name text)")

            started = time.monotonic()
            restored = run(new, "/usr/local/sbin/letsbe-restore", "--set", "latest", "--id", "job1")
            took = time.monotonic() - started
            assert restored.returncode == 0, restored.stderr
            assert "copying backup set" in restored.stdout and "restored nextcloud from" in restored.stdout
            assert sql(new_pg, "nextcloud", "SELECT count(*), max(name) FROM files") == "500|file 99"
            assert [c[1:3] for c in new.calls("docker") if c[1] in ("stop", "start")] == [
                ["stop", "letsbe-nextcloud"],
                ["start", "letsbe-nextcloud"],
            ], "the app is stopped while its database is replaced"

            # The job retried after a crash: the finished restore is not run again.
            again = run(new, "/usr/local/sbin/letsbe-restore", "--set", "latest", "--id", "job1")
            assert again.returncode == 0 and "already done" in again.stdout
            # An operator's second restore of the same set replaces the data again: nothing doubles.
            sql(new_pg, "nextcloud", "INSERT INTO files VALUES (9999, 'written after the backup')")
            manual = run(new, "/usr/local/sbin/letsbe-restore", "--tool", "nextcloud")
            assert manual.returncode == 0, manual.stderr
            assert sql(new_pg, "nextcloud", "SELECT count(*) FROM files") == "500"
            log = new.path("/var/lib/letsbe/restore/restores.log").read_text().splitlines()
            assert [line.split()[0] for line in log] == ["job1", "manual"]

            print(f"letsbe-restore on the new server (off-site copy + load): {took:.1f}s")
            missing = run(new, "/usr/local/sbin/letsbe-restore", "--set", "2020-01-01")
            assert missing.returncode == 1 and "no backup set 2020-01-01" in missing.stderr
        finally:
            new_pg.stop()
