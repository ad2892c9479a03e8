"""``letsbe-hub orders …``: the operator's order commands, over the hub's HTTP API (the same rules as curl)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import httpx
import typer

from letsbe_contracts.enums import AutomationMode, OrderStatus, Region, Tier
from letsbe_hub.orders.sse_client import iter_sse

app = typer.Typer(help="Create, list, inspect and watch orders", no_args_is_help=True)

HubUrl = Annotated[str, typer.Option("--hub-url", envvar="LETSBE_HUB_URL", help="The hub's base URL")]
Token = Annotated[str, typer.Option("--token", envvar="LETSBE_HUB_TOKEN", help="An API token (lbh_…)")]
DEFAULT_URL = "http://127.0.0.1:3847"

# Exit codes of `watch`: scripts can wait for an order with it.
EXIT_FULFILLED, EXIT_FAILED, EXIT_CANCELLED, EXIT_ERROR = 0, 1, 2, 3


def _client(hub_url: str, token: str, timeout: float | None = 30.0) -> httpx.Client:
    return httpx.Client(base_url=hub_url.rstrip("/"), headers={"Authorization": f"Bearer {token}"}, timeout=timeout)


def _check(response: httpx.Response) -> Any:
    if response.is_success:
        return response.json()
    try:
        problem = response.json()
        message = problem.get("detail") or problem.get("title")
    except ValueError:
        message = response.text[:500]
    typer.echo(f"error {response.status_code}: {message}", err=True)
    raise typer.Exit(EXIT_ERROR)


def _print(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


@app.command("create")
def create(
    customer_name: Annotated[str, typer.Option(help="The customer (company or person)")],
    email: Annotated[str, typer.Option(help="The customer's email (receives the welcome email)")],
    domain: Annotated[str, typer.Option(help="The customer's own domain, e.g. acme.example")],
    tool: Annotated[list[str], typer.Option(help="A tool from the catalog; repeat for each")],
    tier: Annotated[Tier, typer.Option()] = Tier.BUILD,
    region: Annotated[Region, typer.Option()] = Region.EU,
    manual: Annotated[bool, typer.Option(help="MANUAL mode: an operator releases the paid order")] = False,
    hub_url: HubUrl = DEFAULT_URL,
    token: Token = "",
) -> None:
    """Create an order; prints it, including the Stripe checkout URL to send to the customer."""
    body = {
        "customer_name": customer_name,
        "customer_email": email,
        "domain": domain,
        "tier": tier.value,
        "region": region.value,
        "tools": tool,
        "automation_mode": (AutomationMode.MANUAL if manual else AutomationMode.AUTO).value,
    }
    with _client(hub_url, token) as c:
        order = _check(c.post("/api/v1/admin/orders", json=body))
    _print({k: order[k] for k in ("id", "status", "domain", "tier", "region", "checkout_url")})


@app.command("list")
def list_orders(
    status: Annotated[list[OrderStatus] | None, typer.Option(help="Only these statuses; repeat")] = None,
    attention: Annotated[bool, typer.Option(help="Only orders flagged for attention")] = False,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 50,
    all_pages: Annotated[bool, typer.Option("--all", help="Follow the cursor to the last page")] = False,
    hub_url: HubUrl = DEFAULT_URL,
    token: Token = "",
) -> None:
    """One line per order, newest first."""
    params: dict[str, Any] = {"limit": limit, "status": [s.value for s in status or ()]}
    if attention:
        params["attention"] = "true"
    with _client(hub_url, token) as c:
        while True:
            page = _check(c.get("/api/v1/admin/orders", params=params))
            for o in page["items"]:
                flag = "  !" if o["attention"] else ""
                typer.echo(f"{o['id']}  {o['status']:<17}  {o['tier']:<10} {o['region']}  {o['domain']}{flag}")
            if not (all_pages and page["next_cursor"]):
                break
            params["cursor"] = page["next_cursor"]


@app.command("show")
def show(order_id: str, hub_url: HubUrl = DEFAULT_URL, token: Token = "") -> None:
    """The order with its transition history, as JSON."""
    with _client(hub_url, token) as c:
        _print(_check(c.get(f"/api/v1/admin/orders/{order_id}")))


@app.command("cancel")
def cancel(
    order_id: str,
    reason: Annotated[str, typer.Option()] = "cancelled by an operator",
    hub_url: HubUrl = DEFAULT_URL,
    token: Token = "",
) -> None:
    """Cancel an order that is not fulfilled."""
    with _client(hub_url, token) as c:
        order = _check(c.post(f"/api/v1/admin/orders/{order_id}/cancel", json={"reason": reason}))
    typer.echo(f"{order['id']}  {order['status']}")


@app.command("retry")
def retry(
    order_id: str,
    force: Annotated[bool, typer.Option(help="Retry a failure reported as not retryable")] = False,
    hub_url: HubUrl = DEFAULT_URL,
    token: Token = "",
) -> None:
    """Resume a FAILED order at its failed stage."""
    with _client(hub_url, token) as c:
        order = _check(c.post(f"/api/v1/admin/orders/{order_id}/retry", json={"force": force}))
    typer.echo(f"{order['id']}  {order['status']}")


@app.command("release")
def release(order_id: str, hub_url: HubUrl = DEFAULT_URL, token: Token = "") -> None:
    """Let a paid MANUAL order into automation."""
    with _client(hub_url, token) as c:
        order = _check(c.post(f"/api/v1/admin/orders/{order_id}/release"))
    typer.echo(f"{order['id']}  {order['status']}")


@app.command("watch")
def watch(
    order_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print each event as a JSON line")] = False,
    stop_on_failed: Annotated[bool, typer.Option(help="Exit (code 1) when the order fails")] = True,
    hub_url: HubUrl = DEFAULT_URL,
    token: Token = "",
) -> None:
    """Follow an order live: its history, then every state change and provisioning log line.

    Exits 0 at FULFILLED, 2 at CANCELLED, 1 at FAILED (unless --no-stop-on-failed); reconnects with
    Last-Event-ID if the connection drops, so no event is missed or repeated.
    """
    raise typer.Exit(asyncio.run(_watch(hub_url, token, order_id, as_json, stop_on_failed)))


async def _watch(hub_url: str, token: str, order_id: str, as_json: bool, stop_on_failed: bool) -> int:
    last_id: str | None = None
    failures = 0
    url = f"{hub_url.rstrip('/')}/api/v1/admin/orders/{order_id}/events"
    async with httpx.AsyncClient(
        headers={"Authorization": f"Bearer {token}"}, timeout=httpx.Timeout(30, read=None)
    ) as c:
        while True:
            headers = {"Last-Event-ID": last_id} if last_id else {}
            try:
                async with c.stream("GET", url, headers=headers) as response:
                    if not response.is_success:
                        await response.aread()
                        _check(response)
                    failures = 0
                    async for event in iter_sse(response.aiter_lines()):
                        last_id = event.id or last_id
                        data = json.loads(event.data)
                        typer.echo(
                            json.dumps({"event": event.event, "id": event.id, **data})
                            if as_json
                            else _line(event.event, data)
                        )
                        if event.event == "end":
                            return EXIT_FULFILLED if data.get("status") == OrderStatus.FULFILLED else EXIT_CANCELLED
                        if stop_on_failed and event.event == "status" and data.get("to") == OrderStatus.FAILED:
                            # History replays past failures too: stop only if the order is still FAILED now.
                            now = await c.get(url.removesuffix("/events"))
                            if now.is_success and now.json()["status"] == OrderStatus.FAILED:
                                return EXIT_FAILED
            except httpx.TransportError as exc:
                failures += 1
                if failures > 5:
                    typer.echo(f"error: lost the hub ({exc!r})", err=True)
                    return EXIT_ERROR
                await asyncio.sleep(min(2.0**failures, 10.0))


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
