"""``letsbe-hub orders …`` (scopes orders:read / orders:write)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer

from letsbe_contracts.enums import AutomationMode, OrderStatus, Region, Tier
from letsbe_hub.cli.api import AllPages, CursorOpt, Hub, Limit, api_command, follow, render, show_list, table

app = typer.Typer(help="Create, list, inspect, release, retry, cancel and watch orders.", no_args_is_help=True)

# Exit codes of `watch`: scripts can wait for an order with it (errors: 3 and 4, as every command).
EXIT_FULFILLED, EXIT_FAILED, EXIT_CANCELLED = 0, 1, 2

COLUMNS = [
    ("ID", "id"),
    ("STATUS", "status"),
    ("TIER", "tier"),
    ("REGION", "region"),
    ("DOMAIN", "domain"),
    ("MODE", "automation_mode"),
    ("ATTENTION", lambda o: "!" if o.get("attention") else ""),
    ("CREATED", "created_at"),
]


def _order(o: dict[str, Any]) -> str:
    base = {k: v for k, v in o.items() if k != "history"}
    history = table(
        o.get("history") or [],
        [("AT", "at"), ("FROM", "from_status"), ("TO", "to_status"), ("ACTOR", "actor"), ("REASON", "reason")],
    )
    return f"{render(base)}\n\nhistory:\n{history}"


@api_command(app, "create")
def create(
    hub: Hub,
    customer_name: Annotated[str, typer.Option(help="The customer (company or person).")],
    email: Annotated[str, typer.Option(help="The customer's email (receives the welcome email).")],
    domain: Annotated[str, typer.Option(help="The customer's own domain, e.g. acme.example.")],
    tool: Annotated[list[str], typer.Option(help="A tool from the catalog; repeat for each.")],
    tier: Annotated[Tier, typer.Option()] = Tier.BUILD,
    region: Annotated[Region, typer.Option()] = Region.EU,
    manual: Annotated[bool, typer.Option(help="MANUAL mode: an operator releases the paid order.")] = False,
) -> None:
    """Create an order (orders:write); prints it with the Stripe checkout URL to send to the customer."""
    body = {
        "customer_name": customer_name,
        "customer_email": email,
        "domain": domain,
        "tier": tier.value,
        "region": region.value,
        "tools": tool,
        "automation_mode": (AutomationMode.MANUAL if manual else AutomationMode.AUTO).value,
    }
    hub.emit(hub.post("/api/v1/admin/orders", body), _order)


@api_command(app, "list")
def list_orders(
    hub: Hub,
    status: Annotated[list[OrderStatus] | None, typer.Option(help="Only these statuses; repeat.")] = None,
    domain: Annotated[str | None, typer.Option(help="Only this domain.")] = None,
    domain_suffix: Annotated[str | None, typer.Option(help="Only this domain and its subdomains.")] = None,
    email: Annotated[str | None, typer.Option(help="Only this customer email.")] = None,
    attention: Annotated[bool, typer.Option(help="Only orders flagged for an operator's attention.")] = False,
    limit: Limit = None,
    cursor: CursorOpt = None,
    all_pages: AllPages = False,
) -> None:
    """Orders, newest first (orders:read)."""
    params = {
        "status": [s.value for s in status or ()],
        "domain": domain,
        "domain_suffix": domain_suffix,
        "customer_email": email,
        "attention": "true" if attention else None,
    }
    show_list(hub, "/api/v1/admin/orders", params, COLUMNS, limit=limit, cursor=cursor, all_pages=all_pages)


@api_command(app, "show")
def show(hub: Hub, order_id: Annotated[str, typer.Argument(help="The order's id.")]) -> None:
    """One order with its transition history (orders:read)."""
    hub.emit(hub.get(f"/api/v1/admin/orders/{order_id}"), _order)


def _moved(o: dict[str, Any]) -> str:
    last = (o.get("history") or [{}])[-1]
    return f"{o['id']}  {o['status']}  (by {last.get('actor', '-')})"


@api_command(app, "checkout")
def checkout(hub: Hub, order_id: Annotated[str, typer.Argument(help="The order's id.")]) -> None:
    """A fresh Stripe Checkout Session for an unpaid order (orders:write)."""
    hub.emit(hub.post(f"/api/v1/admin/orders/{order_id}/checkout"))


@api_command(app, "release")
def release(hub: Hub, order_id: Annotated[str, typer.Argument(help="The order's id.")]) -> None:
    """Let a paid MANUAL order into automation (orders:write)."""
    hub.emit(hub.post(f"/api/v1/admin/orders/{order_id}/release"), _moved)


@api_command(app, "retry")
def retry(
    hub: Hub,
    order_id: Annotated[str, typer.Argument(help="The order's id.")],
    force: Annotated[bool, typer.Option(help="Retry a failure reported as not retryable.")] = False,
    reason: Annotated[str | None, typer.Option(help="Why (kept in the history).")] = None,
) -> None:
    """Resume a FAILED order at its failed stage (orders:write)."""
    body: dict[str, Any] = {"force": force} | ({"reason": reason} if reason else {})
    hub.emit(hub.post(f"/api/v1/admin/orders/{order_id}/retry", body), _moved)


@api_command(app, "cancel")
def cancel(
    hub: Hub,
    order_id: Annotated[str, typer.Argument(help="The order's id.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the history).")] = "cancelled by an operator",
) -> None:
    """Cancel an order that is not fulfilled (orders:write)."""
    hub.emit(hub.post(f"/api/v1/admin/orders/{order_id}/cancel", {"reason": reason}), _moved)


@api_command(app, "watch")
def watch(
    hub: Hub,
    order_id: Annotated[str, typer.Argument(help="The order's id.")],
    stop_on_failed: Annotated[bool, typer.Option(help="Exit (code 1) when the order fails.")] = True,
) -> None:
    """Follow an order live: its history, then every state change and provisioning log line (orders:read).

    Exits 0 at FULFILLED, 2 at CANCELLED, 1 at FAILED (unless --no-stop-on-failed); reconnects with
    Last-Event-ID if the connection drops, so no event is missed or repeated. --json prints one event per line.
    """
    raise typer.Exit(asyncio.run(_watch(hub, order_id, stop_on_failed)))


async def _watch(hub: Hub, order_id: str, stop_on_failed: bool) -> int:
    async def on_event(event: str, event_id: str | None, data: dict[str, Any]) -> int | None:
        typer.echo(json.dumps({"event": event, "id": event_id, **data}) if hub.as_json else _line(event, data))
        if event == "end":
            return EXIT_FULFILLED if data.get("status") == OrderStatus.FULFILLED else EXIT_CANCELLED
        if stop_on_failed and event == "status" and data.get("to") == OrderStatus.FAILED:
            # History replays past failures too: stop only if the order is still FAILED now.
            if (await asyncio.to_thread(hub.get, f"/api/v1/admin/orders/{order_id}"))["status"] == OrderStatus.FAILED:
                return EXIT_FAILED
        return None

    return await follow(hub, f"/api/v1/admin/orders/{order_id}/events", on_event)


def _line(kind: str, d: dict[str, Any]) -> str:
    at = (d.get("at") or "")[11:19]
    if kind == "status":
        reason = f"  ({d['actor']}: {d['reason']})" if d.get("reason") else f"  ({d['actor']})"
        return f"[{at}] {d.get('from') or '—'} → {d['to']}{reason}"
    if kind == "step":
        extra = f" exit={d['exit_code']}" if d.get("exit_code") is not None else ""
        return f"[{at}] step {d['step']:>2} {d['name']} {d['status']} (attempt {d['attempt']}){extra}"
    if kind == "log":
        return f"[{at}] step {d['step']:>2} {d['stream']}| {d['line']}"
    if kind == "end":
        return f"order is {d.get('status')}: stream ended"
    return json.dumps(d)
