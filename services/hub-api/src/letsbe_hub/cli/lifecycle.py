"""``letsbe-hub lifecycle …``: decommission and snapshot jobs (scopes fleet:read / fleet:write)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer

from letsbe_hub.cli.api import Hub, api_command, follow, table

app = typer.Typer(
    help="Lifecycle jobs (decommission, daily snapshots, tool changes): list, inspect, follow, run now, retry.",
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
    kind: Annotated[str | None, typer.Option(help="decommission, snapshot or tool-change.")] = None,
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


@api_command(app, "follow")
def follow_job(hub: Hub, job_id: JobId) -> None:
    """Print the job's transitions as they happen (JSON lines) until it is done."""

    async def on_event(kind: str, _id: str | None, data: Any) -> int | None:
        typer.echo(json.dumps(data))
        return 0 if kind == "end" else None

    raise typer.Exit(asyncio.run(follow(hub, f"/api/v1/admin/lifecycle/jobs/{job_id}/events", on_event)))
