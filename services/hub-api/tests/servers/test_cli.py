"""``letsbe-hub servers …``: the operator's commands against the test database."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from typer.testing import CliRunner

from letsbe_hub.cli import app
from letsbe_hub.servers.testing import FINGERPRINT


def test_an_operator_registers_lists_sizes_and_retires_pool_servers(database_url):
    runner = CliRunner(env={"DATABASE_URL": database_url, "LETSBE_HUB_LOG_JSON": "false"})

    def run(*args: str):
        return runner.invoke(app, ["servers", *args])

    r = run(
        "add",
        "--provider-ref",
        "31337",
        "--tier",
        "build",
        "--region",
        "us",
        "--ipv4",
        "198.51.100.4",
        "--host-key-fingerprint",
        FINGERPRINT,
        "--contract-end",
        "2027-12-01",
    )
    assert r.exit_code == 0, r.output
    server = json.loads(r.stdout)
    assert (server["status"], server["region"], server["contract_end"]) == ("AVAILABLE", "us", "2027-12-01")

    r = run(
        "add",
        "--provider-ref",
        "31337",
        "--tier",
        "build",
        "--region",
        "us",
        "--ipv4",
        "198.51.100.4",
        "--host-key-fingerprint",
        FINGERPRINT,
    )
    assert r.exit_code == 1 and "already registered" in r.output

    r = run("list", "--region", "us")
    assert r.exit_code == 0 and server["id"] in r.stdout and "netcup/31337" in r.stdout and "AVAILABLE" in r.stdout
    assert run("list", "--region", "eu").stdout == ""

    r = run("pool", "build", "us", "--min", "1", "--target", "4")
    assert r.exit_code == 0 and json.loads(r.stdout)["target_available"] == 4
    r = run("pool", "build", "us", "--min", "5", "--target", "4")
    assert r.exit_code != 0 and "target_available" in r.output

    r = run("retire", server["id"])
    assert r.exit_code == 0 and json.loads(r.stdout)["status"] == "RETIRED"

    r = run(
        "add",
        "--provider-ref",
        "1",
        "--tier",
        "build",
        "--region",
        "us",
        "--ipv4",
        "not-an-ip",
        "--host-key-fingerprint",
        FINGERPRINT,
    )
    assert r.exit_code != 0 and "ipv4" in r.output


async def test_the_installed_command_lists_the_pools(database_url):
    env = {**os.environ, "DATABASE_URL": database_url}
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "letsbe-hub"),
        "servers",
        "pools",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    assert {(p["tier"], p["region"], p["min_available"]) for p in json.loads(out)} == {
        ("build", "eu", 3),
        ("build", "us", 2),
    }
