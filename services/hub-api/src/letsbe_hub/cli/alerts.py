"""``letsbe-hub alerts …`` and ``letsbe-hub health`` (scopes alerts:read / alerts:write)."""

from __future__ import annotations

from typing import Annotated

import typer

from letsbe_hub.cli.api import AllPages, CursorOpt, Hub, Limit, api_command, show_list

app = typer.Typer(help="Alerts from the monitor: list, inspect, acknowledge, silence.", no_args_is_help=True)

AlertId = Annotated[str, typer.Argument(help="The alert's id.")]
COLUMNS = [
    ("ID", "alert_id"),
    ("SEVERITY", "severity"),
    ("RULE", "rule"),
    ("STATUS", "status"),
    ("TENANT", "tenant_id"),
    ("LAST_SEEN", "last_seen"),
    ("COUNT", "count"),
    ("ACK", lambda a: bool(a.get("acknowledged_at"))),
    ("SUMMARY", "summary"),
]


def _line(a: dict) -> str:
    extra = f"  silenced until {a['silenced_until']}" if a.get("silenced_until") else ""
    ack = f"  acknowledged by {a['acknowledged_by']}" if a.get("acknowledged_at") else ""
    return f"{a['alert_id']}  {a['rule']}  {a['status']}{ack}{extra}"


@api_command(app, "list")
def list_alerts(
    hub: Hub,
    status: Annotated[str, typer.Option(help="open, resolved or all.")] = "open",
    severity: Annotated[list[str] | None, typer.Option(help="soft, medium or hard; repeat.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's.")] = None,
    rule: Annotated[str | None, typer.Option(help="e.g. heartbeat.stale, disk.usage, tls.expiry.")] = None,
    limit: Limit = None,
    cursor: CursorOpt = None,
    all_pages: AllPages = False,
) -> None:
    """Alerts, newest first (alerts:read)."""
    params = {"status": status, "severity": severity or [], "tenant_id": tenant, "rule": rule}
    show_list(hub, "/api/v1/admin/alerts", params, COLUMNS, limit=limit, cursor=cursor, all_pages=all_pages)


@api_command(app, "show")
def show(hub: Hub, alert_id: AlertId) -> None:
    """One alert (alerts:read)."""
    hub.emit(hub.get(f"/api/v1/admin/alerts/{alert_id}"))


@api_command(app, "ack")
def acknowledge(hub: Hub, alert_id: AlertId, note: Annotated[str | None, typer.Option()] = None) -> None:
    """Acknowledge: no more staff notifications for it (alerts:write)."""
    hub.emit(hub.post(f"/api/v1/admin/alerts/{alert_id}/acknowledge", {"note": note} if note else {}), _line)


@api_command(app, "silence")
def silence(
    hub: Hub,
    alert_id: AlertId,
    until: Annotated[str, typer.Option(help="An ISO time, at most 30 days ahead, e.g. 2026-12-01T08:00:00Z.")],
) -> None:
    """Silence the alert's tenant + rule until a time: no notification at all (alerts:write)."""
    hub.emit(hub.post(f"/api/v1/admin/alerts/{alert_id}/silence", {"until": until}), _line)


@api_command(app, "unsilence")
def unsilence(hub: Hub, alert_id: AlertId) -> None:
    """Lift a silence (alerts:write)."""
    hub.emit(hub.call("DELETE", f"/api/v1/admin/alerts/{alert_id}/silence"), _line)


def health(hub: Hub) -> None:
    """The hub's own health in one document: database, outbox, periodic jobs, disk, open alerts (alerts:read)."""
    hub.emit(hub.get("/api/v1/admin/health"))
