"""``letsbe-hub`` against a whole hub on a real port: every command group through the API, with the operator's
token (its scopes are enforced, its name is recorded), tables or --json, and one-line errors with exit codes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import typer

from hub_testing.orders import insert_order, token
from hub_testing.servers import FINGERPRINT
from letsbe_contracts import AlertRaisedV1, OrderStatus
from letsbe_contracts.enums import FailureStage
from letsbe_hub.alerts.handlers import AlertHandlers
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.cli import app as cli_app
from letsbe_hub.orders.state import transition
from letsbe_platform.db import unit_of_work

from .conftest import LETSBE_HUB, Cli, Ran

IMAGE = "registry.letsbe.biz/letsbe/openclaw"
DIGEST = "sha256:" + "e" * 64


def one_line_error(r: Ran, code: int, *fragments: str) -> None:
    """The failure an operator reads: one line on stderr, nothing on stdout, the exit code, no traceback."""
    assert r.code == code, (r.code, r.stdout, r.stderr)
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])


# --- without a hub ------------------------------------------------------------------------------------------------


def test_every_command_and_group_answers_help():
    root = typer.main.get_command(cli_app)
    seen: list[list[str]] = []

    def walk(cmd, path: list[str]) -> None:
        seen.append(path)
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, [*path, name])

    walk(root, [])
    runner = typer.testing.CliRunner()
    for path in seen:
        r = runner.invoke(cli_app, [*path, "--help"])
        assert r.exit_code == 0 and "Usage:" in r.output, (path, r.output)
    groups = {p[0] for p in seen if p}
    assert {"orders", "servers", "pools", "tenants", "commands", "rollouts", "approvals", "alerts", "tokens"} <= groups
    assert len(seen) > 45


async def test_no_token_and_a_hub_that_is_down_are_one_line_each(offline: Cli):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETSBE_HUB_")}
    env["XDG_CONFIG_HOME"] = str(offline.home)
    r = await offline.proc("orders", "list", env=env)
    one_line_error(r, 4, "no API token", "bootstrap-token")

    r = await offline.proc("alerts", "list", "--token-file", str(offline.home / "missing"), env=env)
    one_line_error(r, 4, "cannot read the token file")

    r = await offline.proc("tenants", "list")
    one_line_error(r, 4, f"cannot reach the hub at {offline.url}")
    r = await offline.proc("orders", "watch", str(uuid.uuid4()))  # no retrying a hub never reached
    one_line_error(r, 4, f"cannot reach the hub at {offline.url}")

    # a token in the default file is used when nothing else is given
    (offline.home / "letsbe").mkdir()
    (offline.home / "letsbe" / "hub-token").write_text("lbh_from_file\n")
    r = await offline.proc("health", "--hub-url", offline.url, env=env)
    one_line_error(r, 4, "cannot reach the hub")

    r = await offline.proc("orders", "show")  # a usage error is click's: exit 2, no traceback
    assert r.code == 2 and "Traceback" not in r.stderr and "Missing argument" in r.stderr


# --- scopes and identity ------------------------------------------------------------------------------------------


async def test_a_token_without_the_scope_gets_a_one_line_403(cli: Cli, sessions):
    reader = cli.as_(await token(sessions, [Scope.ALERTS_READ], name="grafana"))
    r = await reader.proc("orders", "list")
    one_line_error(r, 3, "403 Not allowed: This token lacks the 'orders:read' scope.")
    r = await reader.proc(
        "rollouts", "create", "--component", "openclaw", "--image", IMAGE, "--digest", DIGEST, "--version", "2.0.0"
    )
    one_line_error(r, 3, "403", "'fleet:write'")
    assert (await reader("alerts", "list")).code == 0

    r = await cli.as_("lbh_unknown").proc("orders", "list", "--json")
    one_line_error(r, 3, "401", "unknown or revoked")


async def test_tokens_are_minted_and_revoked_through_the_api(cli: Cli):
    r = await cli("tokens", "create", "--name", "grafana", "--scope", "alerts:read", "--scope", "fleet:read")
    assert r.code == 0 and r.stdout.strip().startswith("lbh_") and len(r.stdout.strip().splitlines()) == 1
    assert "grafana" in r.stderr  # what it is, beside the plaintext

    r = await cli("tokens", "create", "--name", "viewer", "--scope", "orders:read", "--json")
    created = json.loads(r.stdout)
    assert created["name"] == "viewer" and created["scopes"] == ["orders:read"]
    viewer = cli.as_(created["token"])
    assert (await viewer("orders", "list")).code == 0
    one_line_error(await viewer("tokens", "create", "--name", "x", "--scope", "orders:read"), 3, "403", "tokens:admin")

    r = await cli("tokens", "list", "--json")  # what exists, who used it: never a value
    listed = {t["name"]: t for t in json.loads(r.stdout)["items"]}
    assert {"grafana", "viewer", "ops-jane"} <= set(listed)
    assert listed["viewer"]["last_used_at"] is not None and listed["grafana"]["last_used_at"] is None
    assert created["token"] not in r.stdout and "token_hash" not in r.stdout and "lbh_" not in r.stdout
    one_line_error(await viewer("tokens", "list"), 3, "403", "tokens:admin")

    r = await cli("tokens", "revoke", created["id"])
    assert r.code == 0 and "revoked" in r.stdout
    one_line_error(await viewer("orders", "list"), 3, "401")
    one_line_error(await cli("tokens", "revoke", created["id"]), 3, "404")
    r = await cli("tokens", "list", "--status", "revoked", "--json")
    assert [t["id"] for t in json.loads(r.stdout)["items"]] == [created["id"]]
    r = await cli("tokens", "show", created["id"], "--json")
    assert json.loads(r.stdout)["revoked_at"] is not None and created["token"] not in r.stdout
    one_line_error(await cli("tokens", "show", str(uuid.uuid4())), 3, "404")


async def test_bootstrap_token_mints_the_first_token_in_the_database_once(hub_url, database_url, tmp_path):
    op = Cli(hub_url, "", tmp_path)
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "LETSBE_HUB_TOKEN")}
    one_line_error(await op.proc("bootstrap-token", env=base), 4, "DATABASE_URL is not set")

    env = {**base, "DATABASE_URL": database_url}
    r = await op.proc("bootstrap-token", "--name", "first-ops", env=env)
    assert r.code == 0, r.stderr
    first = r.stdout.strip()
    assert first.startswith("lbh_")
    ops = op.as_(first)
    r = await ops("tokens", "create", "--name", "second", "--scope", "orders:read", "--json")
    assert r.code == 0 and json.loads(r.stdout)["name"] == "second"

    # a token that can mint others exists now: the database path refuses, the API is the way
    one_line_error(await op.proc("bootstrap-token", env=env), 3, "unrevoked tokens:admin", "tokens create")
    r = await op.proc("bootstrap-token", "--force", "--name", "recovery", "--scope", "alerts:read", env=env)
    assert r.code == 0 and r.stdout.startswith("lbh_")

    gone = {**base, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    one_line_error(await op.proc("bootstrap-token", env=gone), 4, "cannot use the hub's database")


# --- orders -------------------------------------------------------------------------------------------------------


async def test_orders_through_the_api_record_the_token_name(cli: Cli):
    create = ["orders", "create", "--customer-name", "Acme", "--email", "o@acme.test", "--tool", "nextcloud"]
    r = await cli(*create, "--domain", "one.acme.test", "--manual", "--json")
    assert r.code == 0, r.stderr
    first = json.loads(r.stdout)
    assert first["status"] == "PENDING_PAYMENT" and first["checkout_url"].startswith("https://checkout.stripe.com/")
    assert first["history"][0]["actor"] == "operator:ops-jane"

    r = await cli(*create, "--domain", "two.acme.test")
    assert r.code == 0 and "two.acme.test" in r.stdout and "history:" in r.stdout and "operator:ops-jane" in r.stdout

    r = await cli("orders", "list", "--status", "PENDING_PAYMENT")
    assert r.code == 0
    header, *rows = r.stdout.strip().splitlines()
    assert header.split()[:5] == ["ID", "STATUS", "TIER", "REGION", "DOMAIN"] and len(rows) == 2
    assert "one.acme.test" in r.stdout and first["id"] in r.stdout

    r = await cli("orders", "list", "--limit", "1", "--json")  # one page, as the API answers it
    page = json.loads(r.stdout)
    assert len(page["items"]) == 1 and page["next_cursor"]
    r = await cli("orders", "list", "--limit", "1", "--all", "--json")  # every page
    assert {o["domain"] for o in json.loads(r.stdout)} == {"one.acme.test", "two.acme.test"}

    r = await cli("orders", "cancel", first["id"], "--reason", "changed their mind")
    assert r.code == 0 and "CANCELLED" in r.stdout and "operator:ops-jane" in r.stdout
    r = await cli("orders", "show", first["id"], "--json")
    last = json.loads(r.stdout)["history"][-1]
    assert (last["to_status"], last["actor"], last["reason"]) == (
        "CANCELLED",
        "operator:ops-jane",
        "changed their mind",
    )

    one_line_error(await cli("orders", "release", first["id"]), 3, "409")
    one_line_error(await cli("orders", "show", str(uuid.uuid4())), 3, "404")
    one_line_error(await cli("orders", "show", "not-a-uuid"), 3, "422")
    one_line_error(
        await cli(*create, "--domain", "x.acme.test", "--tool", "wordpress"), 3, "Unknown tool(s): wordpress"
    )


async def test_watch_follows_an_order_live_and_exits_with_its_outcome(cli: Cli, sessions):
    oid = await insert_order(sessions, status=OrderStatus.AWAITING_SERVER)
    async with unit_of_work(sessions) as s:  # a failure in the history that a retry has since resolved
        await transition(
            s, oid, OrderStatus.FAILED, actor="hub-on-order-failed", reason="pool empty", stage=FailureStage.ALLOCATION
        )
        await transition(s, oid, OrderStatus.AWAITING_SERVER, actor="operator:jane", reason="retry #1")
    # The installed command in its own process, read line by line: the replayed history arrives first, and the
    # past FAILED in it must not stop the watch (the order is running again); the cancel then reaches it live.
    watcher = await asyncio.create_subprocess_exec(
        LETSBE_HUB, "orders", "watch", str(oid), env={**os.environ, **cli.env()}, stdout=asyncio.subprocess.PIPE
    )
    assert watcher.stdout is not None
    try:
        lines = [(await asyncio.wait_for(watcher.stdout.readline(), 60)).decode().strip() for _ in range(2)]
        assert "AWAITING_SERVER → FAILED" in lines[0] and "pool empty" in lines[0]
        assert "FAILED → AWAITING_SERVER" in lines[1]
        assert (await cli("orders", "cancel", str(oid), "--reason", "no longer wanted")).code == 0
        rest, _ = await asyncio.wait_for(watcher.communicate(), 60)  # a CLI process starts slowly when loaded
    finally:
        if watcher.returncode is None:
            watcher.kill()
            await watcher.wait()
    assert watcher.returncode == 2, rest  # not 1: the replayed FAILED did not stop it
    lines += rest.decode().strip().splitlines()
    assert "AWAITING_SERVER → CANCELLED" in lines[2] and "operator:ops-jane: no longer wanted" in lines[2]
    assert lines[-1] == "order is CANCELLED: stream ended"

    failing = await insert_order(sessions, status=OrderStatus.DNS_PENDING)
    async with unit_of_work(sessions) as s:
        await transition(s, failing, OrderStatus.FAILED, actor="t", reason="cloudflare", stage=FailureStage.DNS)
    r = await cli("orders", "watch", str(failing), "--json")
    assert r.code == 1 and json.loads(r.stdout.strip().splitlines()[-1])["to"] == "FAILED"
    one_line_error(await cli("orders", "watch", str(uuid.uuid4())), 3, "404")


# --- servers and pools --------------------------------------------------------------------------------------------


async def test_servers_and_pools(cli: Cli):
    add = [
        "servers",
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
    ]
    r = await cli(*add, "--contract-end", "2027-12-01", "--json")
    assert r.code == 0, r.stderr
    server = json.loads(r.stdout)
    assert (server["status"], server["region"], server["contract_end"]) == ("AVAILABLE", "us", "2027-12-01")
    one_line_error(await cli(*add), 3, "409", "already registered")
    one_line_error(await cli(*add[:-4], "--ipv4", "not-an-ip"), 3, "422", "ipv4")

    other = await cli(*add[:3], "31338", *add[4:9], "198.51.100.5", *add[10:], "--json")
    assert other.code == 0, other.stderr
    r = await cli("servers", "list", "--limit", "1", "--all", "--json")  # every page, following next_cursor
    assert {s["provider_ref"] for s in json.loads(r.stdout)} == {"31337", "31338"}
    r = await cli("servers", "list", "--region", "us")
    assert r.code == 0 and server["id"] in r.stdout and "netcup/31337" in r.stdout and "AVAILABLE" in r.stdout
    assert (await cli("servers", "list", "--region", "eu")).stdout.strip() == "(empty)"
    assert json.loads((await cli("servers", "show", server["id"], "--json")).stdout)["ipv4"] == "198.51.100.4"
    r = await cli("servers", "show", server["id"])
    assert "provider_ref" in r.stdout and "31337" in r.stdout

    r = await cli("pools", "set", "build", "us", "--min", "1", "--target", "4", "--json")
    assert r.code == 0 and json.loads(r.stdout)["target_available"] == 4
    one_line_error(await cli("pools", "set", "build", "us", "--min", "5", "--target", "4"), 3, "422")
    pools = json.loads((await cli("pools", "list", "--json")).stdout)["items"]
    assert {(p["tier"], p["region"], p["min_available"]) for p in pools} >= {("build", "us", 1)}
    r = await cli("pools", "list")
    assert r.stdout.splitlines()[0].split()[:4] == ["TIER", "REGION", "MIN", "TARGET"]
    assert isinstance(json.loads((await cli("pools", "replenish", "--json")).stdout)["items"], list)
    assert set(json.loads((await cli("pools", "check", "--json")).stdout)) == {"raised", "resolved"}

    assert json.loads((await cli("servers", "held", "--json")).stdout) == {"items": [], "next_cursor": None}
    assert (await cli("servers", "held")).stdout.strip() == "(empty)"
    assert json.loads((await cli("servers", "costs", "--json")).stdout)["currency"] == "EUR"
    assert json.loads((await cli("servers", "migrations", "--json")).stdout)["items"] == []

    r = await cli("servers", "retire", server["id"])
    assert r.code == 0 and r.stdout.strip() == f"{server['id']}  RETIRED"
    one_line_error(await cli("servers", "provider-status", server["id"]), 3, "503")  # no Netcup credentials here


# --- tenants, commands, approvals, rollouts -------------------------------------------------------------------------


async def enroll(cli: Cli, domain: str) -> tuple[str, str, str]:
    """A tenant with a registered safety-wrapper: (tenant id, agent id, agent key)."""
    tenant = str(uuid.uuid4())
    r = await cli("tenants", "registration-token", tenant, "--domain", domain, "--tier", "build", "--region", "eu")
    assert r.code == 0 and r.stdout.startswith("lbr_"), r.stderr
    async with httpx.AsyncClient(base_url=cli.url) as c:
        body = {"registration_token": r.stdout.strip(), "agent": "safety-wrapper", "version": "1.0.0", "hostname": "v"}
        answer = await c.post("/api/v1/tenant/register", json=body)
    assert answer.status_code == 201, answer.text
    return tenant, answer.json()["agent_id"], answer.json()["api_key"]


async def test_tools_are_added_and_removed_as_jobs_and_refusals_are_one_line(cli: Cli, sessions):
    from sqlalchemy import update

    from letsbe_hub.servers.models import Server
    from letsbe_hub.tenants.models import Tenant

    tenant, _, _ = await enroll(cli, "tools.tenant.test")
    await insert_order(
        sessions, "FULFILLED", id=uuid.UUID(tenant), tier="build", tools=["ghost"], domain="tools.tenant.test"
    )
    async with unit_of_work(sessions) as s:
        server = Server(provider="hetzner", provider_ref="cli-tools", name="t", tier="build", region="eu",
                        ipv4="127.0.0.9", host_key_fingerprint=FINGERPRINT, status="IN_USE")  # fmt: skip
        s.add(server)
        await s.flush()
        await s.execute(update(Tenant).where(Tenant.id == uuid.UUID(tenant)).values(server_id=server.id))

    one_line_error(await cli("tenants", "add-tool", tenant, "no_such_tool"), 3, "422", "no_such_tool")
    one_line_error(await cli("tenants", "remove-tool", tenant, "umami", "--no-wait"), 3, "409")
    r = await cli("tenants", "add-tool", tenant, "umami", "--no-wait", "--reason", "analytics", "--json")
    assert r.code == 0, r.stderr
    job = json.loads(r.stdout)
    assert job["kind"] == "tool-change" and job["data"]["tools_after"] == ["ghost", "umami"]
    assert job["requested_by"] == "token:ops-jane" and job["reason"] == "analytics"
    one_line_error(await cli("tenants", "remove-tool", tenant, "ghost", "--no-wait"), 3, "409", "unfinished")


async def test_customer_app_tokens_are_printed_once_and_revoked(cli: Cli):
    tenant, _, _ = await enroll(cli, "chat.tenant.test")
    r = await cli("tenants", "app-token", tenant, "--label", "phone")
    assert r.code == 0 and r.stdout.strip().startswith("lbc_"), r.stderr
    issued = json.loads((await cli("tenants", "app-token", tenant, "--json")).stdout)
    assert issued["tenant_id"] == tenant and issued["label"] == "app"
    r = await cli("tenants", "revoke-app-token", tenant, issued["id"])
    assert r.code == 0 and r.stdout.strip() == f"app token {issued['id']} revoked"
    one_line_error(await cli("tenants", "revoke-app-token", tenant, issued["id"]), 3, "404")
    one_line_error(await cli("tenants", "app-token", str(uuid.uuid4())), 3, "404")


async def test_tenants_commands_and_approvals(cli: Cli):
    tenant, agent, key = await enroll(cli, "one.tenant.test")
    await enroll(cli, "two.tenant.test")

    r = await cli("tenants", "list")
    assert r.code == 0 and "one.tenant.test" in r.stdout and "safety-wrapper" in r.stdout
    r = await cli("tenants", "list", "--limit", "1", "--all", "--json")  # every page, following next_cursor
    assert {t["domain"] for t in json.loads(r.stdout)} == {"one.tenant.test", "two.tenant.test"}
    r = await cli("tenants", "list", "--limit", "1")  # one page, and how to get the next
    assert r.code == 0 and len(r.stdout.strip().splitlines()) == 2 and "(more: --cursor " in r.stderr
    cursor = r.stderr.split("--cursor ")[1].split(",")[0]
    r = await cli("tenants", "list", "--limit", "1", "--cursor", cursor, "--json")
    assert len(json.loads(r.stdout)["items"]) == 1 and json.loads(r.stdout)["next_cursor"] is None
    one_line_error(await cli("tenants", "list", "--cursor", "garbage"), 3, "400", "Invalid cursor")
    r = await cli("tenants", "list", "--domain-suffix", "tenant.test", "--domain", "two.tenant.test", "--json")
    assert [t["domain"] for t in json.loads(r.stdout)["items"]] == ["two.tenant.test"]
    shown = json.loads((await cli("tenants", "show", tenant, "--json")).stdout)
    assert [a["agent_id"] for a in shown["agents"]] == [agent]
    assert (await cli("tenants", "staging", tenant, "--on")).stdout.strip() == f"{tenant}  staging=yes"
    assert json.loads((await cli("tenants", "agent-details", tenant, agent, "--json")).stdout)["agent_id"] == agent

    r = await cli("commands", "create", tenant, "--type", "restart", "--param", 'containers=["nextcloud"]', "--json")
    assert r.code == 0, r.stderr
    command = json.loads(r.stdout)
    assert command["params"]["containers"] == ["nextcloud"] and command["created_by"] == "token:ops-jane"
    one_line_error(
        await cli("commands", "create", tenant, "--type", "restart", "--param", "containers=5"), 3, "422", "restart"
    )
    one_line_error(await cli("commands", "create", tenant, "--type", "restart", "--params", "{oops"), 2, "not JSON")
    r = await cli("commands", "list", tenant)
    assert command["id"] in r.stdout and "restart" in r.stdout and "token:ops-jane" in r.stdout
    r = await cli("commands", "cancel", command["id"])
    assert r.stdout.strip() == f"{command['id']}  CANCELLED"
    transitions = json.loads((await cli("commands", "show", command["id"], "--json")).stdout)["transitions"]
    assert [(t["to_status"], t["actor"]) for t in transitions] == [
        ("QUEUED", "token:ops-jane"),
        ("CANCELLED", "token:ops-jane"),
    ]
    one_line_error(await cli("commands", "cancel", command["id"]), 3, "409")

    # the Safety Wrapper asks; the operator decides
    async with httpx.AsyncClient(base_url=cli.url, headers={"Authorization": f"Bearer {key}"}) as c:
        asked = []
        for path in ("/Shared/old", "/Shared/older"):
            body = {
                "tool": "nextcloud",
                "action": "files.delete",
                "risk_class": "RED",
                "args_hash": hashlib.sha256(path.encode()).hexdigest(),
                "args_preview": {"path": path},
                "reasons": ["deletes files"],
                "ttl_seconds": 3600,
            }
            answer = await c.post("/api/v1/tenant/approvals", json=body)
            assert answer.status_code == 201, answer.text
            asked.append(answer.json()["id"])
    r = await cli("approvals", "list", "--status", "PENDING", "--tenant", tenant)
    assert all(a in r.stdout for a in asked) and "files.delete" in r.stdout
    r = await cli("approvals", "approve", asked[0], "--note", "old share")
    assert r.stdout.strip() == f"{asked[0]}  APPROVED  (by ops-jane)"
    assert (await cli("approvals", "reject", asked[1])).stdout.strip() == f"{asked[1]}  REJECTED  (by ops-jane)"
    one_line_error(await cli("approvals", "reject", asked[0]), 3, "409")
    decided = json.loads((await cli("approvals", "show", asked[0], "--json")).stdout)
    assert (decided["decided_by"], decided["decision_note"]) == ("ops-jane", "old share")

    assert (await cli("tenants", "revoke-agent", tenant, agent)).stdout.strip() == f"agent {agent} revoked"
    one_line_error(await cli("tenants", "revoke-agent", tenant, agent), 3, "404")
    assert (await cli("tenants", "decommission", tenant)).stdout.strip() == f"{tenant}  DECOMMISSIONED"

    # The decommission job waits for the export window; an operator can end it early and follow it to the end.
    jobs = json.loads((await cli("lifecycle", "jobs", "--tenant", tenant, "--json")).stdout)
    assert [(j["kind"], j["status"]) for j in jobs] == [("decommission", "EXPORT_WINDOW")]
    job = jobs[0]["job_id"]
    assert "EXPORT_WINDOW" in (await cli("lifecycle", "show", job)).stdout
    assert (await cli("lifecycle", "run-now", job)).stdout.strip() == f"{job}  due now"
    followed = await cli("lifecycle", "follow", job)
    assert followed.code == 0, followed.stderr
    seen = [json.loads(line) for line in followed.stdout.splitlines()]
    assert [e.get("to") for e in seen[:-1]] == ["EXPORT_WINDOW", "RELEASING_SERVER", "SUCCEEDED"]
    assert seen[-1] == {"job_id": job, "status": "SUCCEEDED"}
    one_line_error(await cli("lifecycle", "run-now", job), 3, "409")


async def test_rollouts_record_the_token_name(cli: Cli):
    tenants = [(await enroll(cli, f"r{i}.tenant.test"))[0] for i in range(3)]
    await cli("tenants", "staging", tenants[0], "--on")
    r = await cli(
        "rollouts",
        "create",
        "--component",
        "openclaw",
        "--image",
        IMAGE,
        "--digest",
        DIGEST,
        "--version",
        "2.0.0",
        "--soak-scale",
        "0.001",
        "--concurrency",
        "3",
        "--json",
    )
    assert r.code == 0, r.stderr
    created = json.loads(r.stdout)
    assert created["status"] == "RUNNING" and created["concurrency"] == 3 and created["created_by"] == "token:ops-jane"
    assert [s["spec"]["soak_seconds"] for s in created["stages"]] == [172, 86, 43, 0]
    rid = created["id"]

    assert rid in (await cli("rollouts", "list")).stdout
    r = await cli("rollouts", "show", rid)
    assert "stages:" in r.stdout and "canary-5" in r.stdout
    targets = json.loads((await cli("rollouts", "targets", rid, "--all", "--json")).stdout)
    assert {t["tenant_id"] for t in targets} == set(tenants)
    r = await cli("rollouts", "targets", rid)
    assert r.stdout.splitlines()[0].split()[:4] == ["TENANT", "STAGE", "POS", "STATUS"]

    assert (await cli("rollouts", "pause", rid)).stdout.strip() == f"{rid}  PAUSED  (paused by token:ops-jane)"
    assert (await cli("rollouts", "resume", rid)).code == 0
    one_line_error(await cli("rollouts", "approve", rid), 3, "409")
    r = await cli("rollouts", "abort", rid, "--reason", "drill", "--json")
    assert json.loads(r.stdout)["status"] == "ABORTED" and json.loads(r.stdout)["reason"] == "drill (token:ops-jane)"
    one_line_error(await cli("rollouts", "pause", rid), 3, "409", "cannot be paused")

    # the rollout's history says who did what; watching a finished rollout replays it and exits 2 (ABORTED)
    r = await cli("rollouts", "watch", rid)
    assert r.code == 2, r
    assert "paused by token:ops-jane" in r.stdout and "resumed by token:ops-jane" in r.stdout
    assert "drill (token:ops-jane)" in r.stdout
    r = await cli("rollouts", "watch", rid, "--json")
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert (events[-1]["event"], events[-1]["status"]) == ("end", "ABORTED")
    assert {e["message"] for e in events if e["event"] == "rollout-event"} >= {"paused by token:ops-jane"}


# --- alerts and health ----------------------------------------------------------------------------------------------


async def test_alerts_and_health(cli: Cli, sessions):
    now = datetime.now(UTC).replace(microsecond=0)
    raised = AlertRaisedV1(
        alert_id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        rule="disk.usage",
        severity="medium",
        summary="Disk / at 91.0 % (threshold 85 %)",
        value=91.0,
        threshold=85.0,
        first_seen=now,
        last_seen=now,
        count=1,
    )
    await AlertHandlers(sessions).on_raised(raised, None)  # as the monitor's alert-raised would
    aid = str(raised.alert_id)

    r = await cli("alerts", "list", "--rule", "disk.usage")
    assert r.code == 0 and aid in r.stdout and "Disk / at 91.0 %" in r.stdout
    assert [
        a["alert_id"]
        for a in json.loads((await cli("alerts", "list", "--rule", "disk.usage", "--json")).stdout)["items"]
    ] == [aid]
    r = await cli("alerts", "ack", aid, "--note", "cleanup running")
    assert r.stdout.strip() == f"{aid}  disk.usage  open  acknowledged by ops-jane"
    until = (now + timedelta(days=1)).isoformat()
    assert "silenced until" in (await cli("alerts", "silence", aid, "--until", until)).stdout
    one_line_error(await cli("alerts", "silence", aid, "--until", "2001-01-01T00:00:00Z"), 3, "422")
    assert "silenced" not in (await cli("alerts", "unsilence", aid)).stdout
    shown = json.loads((await cli("alerts", "show", aid, "--json")).stdout)
    assert (shown["acknowledged_by"], shown["ack_note"], shown["silenced_until"]) == (
        "ops-jane",
        "cleanup running",
        None,
    )

    health = json.loads((await cli("health", "--json")).stdout)
    assert health["status"] in ("ok", "degraded") and health["database"]["ok"] is True
    assert "open_alerts" in (await cli("health")).stdout
