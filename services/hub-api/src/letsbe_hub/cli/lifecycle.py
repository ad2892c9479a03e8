"""``letsbe-hub lifecycle …``: decommission, snapshot, restore, recovery and migration jobs (scopes fleet:read /
fleet:write)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer

from letsbe_hub.cli.api import Hub, api_command, follow, table

app = typer.Typer(
    help="Lifecycle jobs (decommission, snapshots, restore, recovery of a lost server, migration, tool changes): "
    "list, inspect, follow, run now, retry; start a restore, a recovery, a migration.",
    no_args_is_help=True,
)

JobId = Annotated[str, typer.Argument(help="The job's id (a tenant's decommission_job_id, or from `jobs`).")]
COLUMNS = [
    ("JOB", "job_id"),
    ("KIND", "kind"),
    ("TENANT", "tenant_id"),
    ("STATUS", "status"),
    ("DUE", "due_at"),
    ("ATTEMPTS", "attempts"),
    ("ERROR", lambda j: (j.get("last_error") or "-")[:60]),
]


@api_command(app, "jobs")
def jobs(
    hub: Hub,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's jobs.")] = None,
    kind: Annotated[
        str | None, typer.Option(help="decommission, snapshot, restore, recover, migrate or tool-change.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 100,
) -> None:
    """Newest first."""
    params: dict[str, Any] = {"limit": limit}
    if tenant:
        params["tenant_id"] = tenant
    if kind:
        params["kind"] = kind
    rows = hub.get("/api/v1/admin/lifecycle/jobs", **params)
    hub.emit(rows, lambda rs: table(rs, COLUMNS))


def _job_text(j: dict[str, Any]) -> str:
    lines = [table([j], COLUMNS)]
    for h in j.get("history") or []:
        lines.append(f"  {h['at']}  {h['from_status'] or '-'} → {h['to_status']}  ({h['actor']}) {h['reason'] or ''}")
    return "\n".join(lines)


@api_command(app, "show")
def show(hub: Hub, job_id: JobId) -> None:
    """The job with its history."""
    hub.emit(hub.get(f"/api/v1/admin/lifecycle/jobs/{job_id}"), _job_text)


@api_command(app, "run-now")
def run_now(hub: Hub, job_id: JobId) -> None:
    """Make a waiting job due now: end a decommission's export window early, or take a snapshot at once."""
    hub.emit(hub.post(f"/api/v1/admin/lifecycle/jobs/{job_id}/run-now"), lambda j: f"{j['job_id']}  due now")


@api_command(app, "retry")
def retry(
    hub: Hub, job_id: JobId, reason: Annotated[str, typer.Option(help="Why.")] = "retried by an operator"
) -> None:
    """Resume a FAILED job at the step that failed."""
    answer = hub.post(f"/api/v1/admin/lifecycle/jobs/{job_id}/retry", {"reason": reason})
    hub.emit(answer, lambda j: f"{j['job_id']}  {j['status']}")


def _follow(hub: Hub, job_id: str) -> int:
    async def on_event(kind: str, _id: str | None, data: Any) -> int | None:
        typer.echo(json.dumps(data))
        return 0 if kind == "end" else None

    return asyncio.run(follow(hub, f"/api/v1/admin/lifecycle/jobs/{job_id}/events", on_event))


@api_command(app, "follow")
def follow_job(hub: Hub, job_id: JobId) -> None:
    """Print the job's transitions as they happen (JSON lines) until it is done."""
    raise typer.Exit(_follow(hub, job_id))


TenantId = Annotated[str, typer.Argument(help="The tenant's id.")]
Follow = Annotated[bool, typer.Option("--follow", help="Then print its transitions until it is done.")]


def _started(hub: Hub, answer: Any, then_follow: bool) -> None:
    hub.emit(answer, lambda j: f"{j['job_id']}  {j['kind']}  {j['status']}")
    if then_follow:
        raise typer.Exit(_follow(hub, answer["job_id"]))


@api_command(app, "backups")
def backups(hub: Hub, tenant_id: TenantId, limit: Annotated[int, typer.Option(min=1, max=60)] = 14) -> None:
    """The tenant's nightly backup sets as its Safety Wrapper reported them, newest first."""
    rows = hub.get(f"/api/v1/admin/lifecycle/tenants/{tenant_id}/backups", limit=limit)
    columns = [
        ("SET", "backup_set"),
        ("CHECKED", "checked_at"),
        ("DATABASES", lambda b: ", ".join(
            f"{t}:{d.get('status')}" for t, d in ((b.get("status") or {}).get("databases") or {}).items()
        ) or "-"),
        ("OFF-SITE", lambda b: ((b.get("status") or {}).get("remote_sync") or {}).get("status", "-")),
        ("PROBLEM", lambda b: (b.get("problem") or "-")[:60]),
    ]  # fmt: skip
    hub.emit(rows, lambda r: table(r["items"], columns))


@api_command(app, "restore")
def restore(
    hub: Hub,
    tenant_id: TenantId,
    backup_set: Annotated[str, typer.Option("--set", help="YYYY-MM-DD (from `backups`) or latest.")] = "latest",
    tool: Annotated[str | None, typer.Option(help="Only this tool (default: every tool).")] = None,
    server: Annotated[str | None, typer.Option(help="Another server of the tenant's (default: its own).")] = None,
    reason: Annotated[str | None, typer.Option(help="Why.")] = None,
    then_follow: Follow = False,
) -> None:
    """Restore the tenant's tools (or one) from a backup set."""
    body: dict[str, Any] = {"backup_set": backup_set, "tool": tool, "server_id": server, "reason": reason}
    answer = hub.post(f"/api/v1/admin/lifecycle/tenants/{tenant_id}/restore", {k: v for k, v in body.items() if v})
    _started(hub, answer, then_follow)


@api_command(app, "recover")
def recover(
    hub: Hub,
    tenant_id: TenantId,
    reason: Annotated[str, typer.Option(help="Why.")] = "the tenant's server is lost",
    then_follow: Follow = False,
) -> None:
    """The VPS is completely lost: a pool server is taken and provisioned, the latest (off-site) backup restored,
    DNS switched to it, the lost server deleted. Asking again while it runs answers the same job."""
    _started(hub, hub.post(f"/api/v1/admin/lifecycle/tenants/{tenant_id}/recover", {"reason": reason}), then_follow)


@api_command(app, "migrate")
def migrate(
    hub: Hub,
    proposal_id: Annotated[str, typer.Argument(help="A migration proposal's id (`servers migrations`).")],
    then_follow: Follow = False,
) -> None:
    """Carry out a Hetzner -> Netcup migration proposal (once per proposal)."""
    _started(hub, hub.post(f"/api/v1/admin/lifecycle/migrations/{proposal_id}/start"), then_follow)
