"""``letsbe-sandbox``: drive the sandbox like a customer and an operator would.

``order`` creates an order through the hub's admin API, then pays its Stripe Checkout Session on the fake, which
delivers a correctly signed ``checkout.session.completed`` to the hub's webhook — exactly as Stripe would.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:  # imported where used: --help answers sooner
    import httpx

app = typer.Typer(help="Drive the sandbox of `make run`", no_args_is_help=True)
DIR = Path(".data/sandbox")


@app.callback()
def _commands() -> None:
    """Subcommands below (a callback keeps `order` a named command)."""


def _world(root: Path) -> dict:
    path = root / "env.json"
    if not path.exists():
        raise typer.BadParameter(f"{path} not found: is `make run` running in sandbox mode?")
    return json.loads(path.read_text())


@app.command()
def order(
    domain: Annotated[str, typer.Option(help="the customer's domain")] = "shop.example.com",
    tools: Annotated[str, typer.Option(help="comma-separated tool names")] = "nextcloud,ghost,uptime_kuma",
    tier: Annotated[str, typer.Option()] = "build",
    region: Annotated[str, typer.Option()] = "eu",
    email: Annotated[str, typer.Option()] = "owner@example.com",
    watch: Annotated[bool, typer.Option(help="stream the order's events until it is done")] = True,
    root: Annotated[Path, typer.Option(help="the sandbox folder")] = DIR,
) -> None:
    """Create an order and pay for it; the order then walks to FULFILLED on its own."""
    import httpx

    from letsbe_platform.tls import client_context

    world = _world(root)
    hub = world["hub_url"]
    token = Path(world["admin_token_file"]).read_text().strip()
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(timeout=30, verify=client_context()) as client:
        r = client.post(
            f"{hub}/api/v1/admin/orders",
            headers=headers,
            json={
                "customer_name": "Sandbox Customer",
                "customer_email": email,
                "domain": domain,
                "tier": tier,
                "region": region,
                "tools": [t.strip() for t in tools.split(",") if t.strip()],
            },
        )
        if r.status_code != 201:
            raise typer.Exit(_fail("creating the order", r))
        created = r.json()
        order_id, session_id = created["id"], created["checkout_session_id"]
        typer.echo(f"order {order_id} created ({created['status']}), checkout session {session_id}")
        paid = client.post(f"{world['fakes']['stripe']}/_fake/checkout/sessions/{session_id}/complete")
        if paid.status_code != 200:
            raise typer.Exit(_fail("paying the checkout session", paid))
        typer.echo(
            f"paid: Stripe delivered checkout.session.completed, the webhook answered {paid.json()['webhook_status']}"
        )
        events = f"{hub}/api/v1/admin/orders/{order_id}/events"
        typer.echo(f'follow it:  curl -N -H "Authorization: Bearer $(cat {world["admin_token_file"]})" {events}')
        if watch:
            with client.stream("GET", events, headers=headers, timeout=httpx.Timeout(30, read=None)) as stream:
                for line in stream.iter_lines():
                    if line.startswith("data:"):
                        typer.echo(line[5:].strip())


def _fail(what: str, r: httpx.Response) -> int:
    typer.echo(f"failed {what}: HTTP {r.status_code} {r.text}", err=True)
    return 1


def main() -> None:
    app()
