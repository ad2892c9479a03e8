"""backup.sh and restore.sh against the session's real Postgres 16: the disaster-recovery round trip and its guards."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import subprocess
import time
from pathlib import Path

from letsbe_platform.testing import eventually

# A hub-shaped database: one schema per service, sequences and identities, FKs, partial index, view, jsonb, bytea.
SCHEMA = """
CREATE SCHEMA hub; CREATE SCHEMA provisioner; CREATE SCHEMA monitor;
CREATE TABLE hub.alembic_version (version_num varchar(32) PRIMARY KEY);
INSERT INTO hub.alembic_version VALUES ('2026_11_27_1200');
CREATE TABLE hub.customers (id bigserial PRIMARY KEY, email text UNIQUE NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE hub.orders (
  id uuid PRIMARY KEY, customer_id bigint NOT NULL REFERENCES hub.customers, status text NOT NULL,
  tools jsonb NOT NULL, price numeric(10, 2), created_at timestamptz NOT NULL);
CREATE INDEX orders_open ON hub.orders (status) WHERE status <> 'FULFILLED';
CREATE TABLE hub.order_history (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, order_id uuid NOT NULL REFERENCES hub.orders,
  to_status text NOT NULL, at timestamptz NOT NULL);
CREATE VIEW hub.open_orders AS SELECT id, status FROM hub.orders WHERE status <> 'FULFILLED';
CREATE TABLE provisioner.jobs (id bigserial PRIMARY KEY, order_id uuid NOT NULL, log text, ssh_key_encrypted bytea);
CREATE TABLE monitor.alerts (id bigserial PRIMARY KEY, tenant text NOT NULL, severity text, raised_at timestamptz);
"""

FILL = """
INSERT INTO hub.customers (email, created_at)
  SELECT 'c' || i || '@example.com', '2026-01-01'::timestamptz + i * interval '1 minute'
  FROM generate_series(1, {n} / 10) i;
INSERT INTO hub.orders
  SELECT md5('o' || i)::uuid, 1 + i % ({n} / 10), (ARRAY['FULFILLED', 'PROVISIONING', 'FAILED'])[1 + i % 3],
         jsonb_build_object('tools', jsonb_build_array('nextcloud', 'ghost'), 'n', i), (i % 9000) / 100.0,
         '2026-01-01'::timestamptz + i * interval '1 second'
  FROM generate_series(1, {n}) i;
INSERT INTO hub.order_history (order_id, to_status, at)
  SELECT md5('o' || (1 + i % {n}))::uuid, 'S' || i % 7, '2026-01-01'::timestamptz + i * interval '1 second'
  FROM generate_series(1, 3 * {n}) i;
INSERT INTO provisioner.jobs (order_id, log, ssh_key_encrypted)
  SELECT md5('o' || i)::uuid, repeat('step ok; ', 20), decode(repeat(md5(i::text), 16), 'hex')
  FROM generate_series(1, {n} / 4) i;
INSERT INTO monitor.alerts (tenant, severity, raised_at)
  SELECT 't' || i % 50, 'HARD', '2026-02-01'::timestamptz + i * interval '1 hour' FROM generate_series(1, 500) i;
"""


def fingerprint(db) -> dict[str, str]:
    """Per table: row count and an md5 over every row's text in a stable order; sequences, views, indexes."""
    tables = db.sql(
        "SELECT schemaname || '.' || tablename FROM pg_tables "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
    ).split()
    out = {}
    for table in tables:
        out[table] = db.sql(
            f"SELECT count(*) || ' ' || md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {table} x"  # noqa: S608 (catalog names)
        )
    out["sequences"] = db.sql(
        "SELECT string_agg(schemaname || '.' || sequencename || '=' || coalesce(last_value, 0), ',' "
        "ORDER BY schemaname, sequencename) "
        "FROM pg_sequences"
    )
    out["views"] = db.sql(
        "SELECT string_agg(schemaname || '.' || viewname, ',' ORDER BY viewname) FROM pg_views "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
    )
    out["indexes"] = db.sql(
        "SELECT string_agg(indexdef, ';' ORDER BY indexdef) FROM pg_indexes "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
    )
    return out


def hub_database(make_database, n: int):
    db = make_database()
    db.sql(SCHEMA + FILL.format(n=n))
    return db


def status(env) -> dict:
    return json.loads((Path(env["BACKUP_DIR"]) / "backup-status.json").read_text())


def test_backup_drop_restore_round_trip_brings_back_every_row_and_sequence(
    kit, script_env, make_database, record_property
):
    db = hub_database(make_database, n=40_000)
    before = fingerprint(db)
    # The services' SQLAlchemy form of the URL works as is.
    env = {**script_env, "DATABASE_URL": db.url.replace("postgresql://", "postgresql+asyncpg://", 1)}

    backup = kit.run("backup.sh", env=env)
    assert backup.returncode == 0, backup.stderr
    report = status(env)
    entry = report["databases"][db.name]
    dump = Path(env["BACKUP_DIR"]) / entry["file"]
    assert entry["status"] == "success"
    assert entry["sha256"] == hashlib.sha256(dump.read_bytes()).hexdigest()
    assert (dump.parent / (dump.name + ".sha256")).read_text() == f"{entry['sha256']}  {dump.name}\n"
    assert report["exit_code"] == 0 and report["last_success"] == report["last_run"]

    db.drop()
    assert not db.exists()

    started = time.monotonic()
    restore = kit.run("restore.sh", "latest", env=env)
    restore_seconds = time.monotonic() - started
    assert restore.returncode == 0, restore.stderr

    assert fingerprint(db) == before
    # Sequences continue where they were: the hub's next insert does not collide with a restored row.
    db.sql("INSERT INTO hub.order_history (order_id, to_status, at) SELECT id, 'X', now() FROM hub.orders LIMIT 1")
    assert db.admin_sql(f"SELECT count(*) FROM pg_database WHERE datname = '{db.name}_restoring'") == "0"  # noqa: S608

    rows = sum(int(v.split()[0]) for k, v in before.items() if k not in ("sequences", "views", "indexes"))
    size_mb = dump.stat().st_size / 1048576
    record_property("restore_seconds", round(restore_seconds, 2))
    print(f"\nmeasured RTO: restore of {rows} rows ({size_mb:.1f} MB dump) took {restore_seconds:.2f} s")


def test_restore_refuses_a_backup_that_does_not_match_its_checksum(kit, script_env, make_database):
    db = hub_database(make_database, n=100)
    env = {**script_env, "DATABASE_URL": db.url}
    assert kit.run("backup.sh", env=env).returncode == 0
    dump = Path(env["BACKUP_DIR"]) / status(env)["databases"][db.name]["file"]
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    db.sql("INSERT INTO monitor.alerts (tenant) VALUES ('after-backup')")
    before = fingerprint(db)

    restore = kit.run("restore.sh", "--replace", str(dump), env=env)

    assert restore.returncode == 2
    assert "does not match its checksum" in restore.stderr
    assert fingerprint(db) == before


def test_restore_keeps_a_database_with_tables_unless_told_to_replace_it(kit, script_env, make_database):
    db = hub_database(make_database, n=100)
    env = {**script_env, "DATABASE_URL": db.url}
    assert kit.run("backup.sh", env=env).returncode == 0
    at_backup = fingerprint(db)
    db.sql("INSERT INTO monitor.alerts (tenant) VALUES ('after-backup')")
    changed = fingerprint(db)

    refused = kit.run("restore.sh", env=env)
    assert refused.returncode == 3
    assert "--replace" in refused.stderr
    assert fingerprint(db) == changed

    replaced = kit.run("restore.sh", "--replace", env=env)
    assert replaced.returncode == 0, replaced.stderr
    assert fingerprint(db) == at_backup


async def test_restore_refuses_a_database_a_service_is_still_connected_to(kit, script_env, make_database, pg_bin_dir):
    """A hub service still running holds sessions: replacing the database under it is refused, and nothing changes.
    (Sessions that have just ended, such as the script's own look at the tables, are waited out, not refused.)"""
    db = hub_database(make_database, n=10)
    env = {**script_env, "DATABASE_URL": db.url}
    assert kit.run("backup.sh", env=env).returncode == 0
    before = fingerprint(db)
    service = subprocess.Popen([str(pg_bin_dir / "psql"), "-X", "-q", db.url, "-c", "SELECT pg_sleep(120)"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        connected = f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{db.name}'"  # noqa: S608 (our uuid name)
        await eventually(lambda: db.admin_sql(connected) == "1", "the service's session")
        refused = await asyncio.to_thread(kit.run, "restore.sh", "--replace", env=env)
    finally:
        service.kill()
        service.wait()
    assert refused.returncode == 3, refused.stderr
    assert "sessions are connected" in refused.stderr and "stop the hub services first" in refused.stderr
    assert fingerprint(db) == before


def test_a_restore_that_fails_leaves_the_target_as_it_was(kit, script_env, make_database):
    db = hub_database(make_database, n=100)
    role = f"{db.name}_owner"
    db.admin_sql(f'CREATE ROLE "{role}"')
    try:
        db.sql(f'ALTER TABLE monitor.alerts OWNER TO "{role}"')
        env = {**script_env, "DATABASE_URL": db.url}
        assert kit.run("backup.sh", env=env).returncode == 0
        # The dump now names a role this server no longer has, so pg_restore stops half way.
        db.sql(f'REASSIGN OWNED BY "{role}" TO CURRENT_USER; DROP OWNED BY "{role}"')
        db.admin_sql(f'DROP ROLE "{role}"')
        db.sql("INSERT INTO monitor.alerts (tenant) VALUES ('live')")
        before = fingerprint(db)

        restore = kit.run("restore.sh", "--replace", env=env)

        assert restore.returncode == 4, restore.stderr
        assert f"{db.name} is unchanged" in restore.stderr
        assert fingerprint(db) == before
        assert db.admin_sql(f"SELECT count(*) FROM pg_database WHERE datname LIKE '{db.name}_%'") == "0"  # noqa: S608
    finally:
        db.admin_sql(f'DROP ROLE IF EXISTS "{role}"')


def test_a_failed_backup_exits_2_reports_it_and_keeps_the_older_backups(kit, script_env, make_database):
    db = hub_database(make_database, n=100)
    env = {**script_env, "DATABASE_URL": db.url, "BACKUP_NOW": "2026-02-26T03:00:00Z"}
    assert kit.run("backup.sh", env=env).returncode == 0
    backups = Path(env["BACKUP_DIR"])
    good = sorted(p.name for p in backups.iterdir())

    missing = {**env, "DATABASE_URL": db.url + "_gone", "BACKUP_NOW": "2026-02-27T03:00:00Z"}
    failed = kit.run("backup.sh", env=missing)

    assert failed.returncode == 2
    report = status(env)
    assert report["exit_code"] == 2
    assert report["last_run"] == "2026-02-27T03:00:00Z"
    assert report["last_success"] == "2026-02-26T03:00:00Z"
    entry = report["databases"][db.name + "_gone"]
    assert entry["status"] == "failed" and "does not exist" in entry["error"]
    assert sorted(p.name for p in backups.iterdir()) == good  # no partial file, nothing rotated away


def test_a_second_backup_while_one_runs_exits_5_and_touches_nothing(kit, script_env, make_database):
    db = make_database()
    env = {**script_env, "DATABASE_URL": db.url}
    backups = Path(env["BACKUP_DIR"])
    backups.mkdir()
    with open(backups / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        second = kit.run("backup.sh", env=env)
    assert second.returncode == 5
    assert sorted(p.name for p in backups.iterdir()) == [".lock"]


def test_offsite_failure_exits_3_and_keeps_the_local_backup(kit, script_env, make_database):
    db = make_database()
    env = {**script_env, "DATABASE_URL": db.url, "BACKUP_RCLONE_REMOTE": "nosuchremote:letsbe-hub-backups"}

    done = kit.run("backup.sh", env=env)

    assert done.returncode == 3
    report = status(env)
    assert report["databases"][db.name]["status"] == "success"
    assert (Path(env["BACKUP_DIR"]) / report["databases"][db.name]["file"]).exists()
    assert report["remote_sync"]["status"] == "failed"
    assert "rclone" in report["remote_sync"]["error"]
    assert report["last_success"] == report["last_run"]  # the backup itself is good
