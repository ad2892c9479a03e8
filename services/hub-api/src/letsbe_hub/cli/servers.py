"""``letsbe-hub servers …`` and ``letsbe-hub pools …`` (scopes servers:read / servers:write)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from letsbe_contracts import Provider, Region, Tier
from letsbe_hub.cli.api import AllPages, CursorOpt, Hub, Limit, api_command, show_list, table

app = typer.Typer(
    help="Pool servers: register, list, inspect, snapshot, retire; held orders; costs.", no_args_is_help=True
)
pools = typer.Typer(
    help="Pool sizes: policy and live counts, what to order, the below-minimum check.", no_args_is_help=True
)

ServerId = Annotated[str, typer.Argument(help="The server's id.")]
COLUMNS = [
    ("ID", "id"),
    ("PROVIDER", lambda s: f"{s['provider']}/{s['provider_ref']}"),
    ("TIER", "tier"),
    ("REGION", "region"),
    ("IPV4", "ipv4"),
    ("STATUS", "status"),
    ("ORDER", "order_id"),
    ("NAME", "name"),
]
POOL_COLUMNS = [
    ("TIER", "tier"),
    ("REGION", "region"),
    ("MIN", "min_available"),
    ("TARGET", "target_available"),
    ("AVAILABLE", "available"),
    ("RESERVED", "reserved"),
    ("IN_USE", "in_use"),
    ("DRAINING", "draining"),
    ("BELOW_MIN", "below_minimum"),
]

HELD_COLUMNS = [
    ("ORDER", "order_id"),
    ("TIER", "tier"),
    ("REGION", "region"),
    ("DOMAIN", "domain"),
    ("STATUS", "status"),
    ("HELD", "held_at"),
    ("REASON", "reason"),
    ("SERVER", "server_id"),
]
REPLENISH_COLUMNS = [
    ("TIER", "tier"),
    ("REGION", "region"),
    ("PLAN", "netcup_plan"),
    ("AVAILABLE", "available"),
    ("MIN", "min_available"),
    ("TARGET", "target_available"),
    ("TO_ORDER", "to_order"),
    ("EUR_MONTH", "monthly_cost_eur"),
]
MIGRATION_COLUMNS = [
    ("PERIOD", "period"),
    ("TENANT", "tenant_id"),
    ("FROM", "from_server_id"),
    ("TO", "to_server_id"),
    ("TIER", "tier"),
    ("REGION", "region"),
    ("SAVING_EUR", "monthly_saving_eur"),
]


@api_command(app, "add")
def add(
    hub: Hub,
    provider_ref: Annotated[str, typer.Option(help="The provider's server id (Netcup SCP id).")],
    tier: Annotated[Tier, typer.Option()],
    region: Annotated[Region, typer.Option()],
    ipv4: Annotated[str, typer.Option()],
    provider: Annotated[Provider, typer.Option()] = Provider.NETCUP,
    ipv6: Annotated[str | None, typer.Option()] = None,
    name: Annotated[str | None, typer.Option()] = None,
    ssh_port: Annotated[int, typer.Option()] = 22,
    ssh_user: Annotated[str, typer.Option()] = "letsbe",
    host_key_fingerprint: Annotated[str | None, typer.Option(help="SHA256:…; the hub reads it if omitted.")] = None,
    contract_end: Annotated[str | None, typer.Option(help="YYYY-MM-DD, end of the Netcup term.")] = None,
) -> None:
    """Register an installed pool server as AVAILABLE (servers:write)."""
    body: dict[str, Any] = {
        "provider": provider.value,
        "provider_ref": provider_ref,
        "tier": tier.value,
        "region": region.value,
        "ipv4": ipv4,
        "ipv6": ipv6,
        "name": name,
        "ssh_port": ssh_port,
        "ssh_user": ssh_user,
        "host_key_fingerprint": host_key_fingerprint,
        "contract_end": contract_end,
    }
    hub.emit(hub.post("/api/v1/admin/servers", {k: v for k, v in body.items() if v is not None}))


@api_command(app, "list")
def list_servers(
    hub: Hub,
    status: Annotated[
        list[str] | None, typer.Option(help="AVAILABLE, RESERVED, IN_USE, DRAINING or RETIRED; repeat.")
    ] = None,
    tier: Annotated[Tier | None, typer.Option()] = None,
    region: Annotated[Region | None, typer.Option()] = None,
    provider: Annotated[Provider | None, typer.Option()] = None,
    limit: Limit = None,
    cursor: CursorOpt = None,
    all_pages: AllPages = False,
) -> None:
    """Servers, oldest first, filtered (servers:read)."""
    params = {"status": status or [], "tier": tier, "region": region, "provider": provider}
    params = {k: getattr(v, "value", v) for k, v in params.items()}
    show_list(hub, "/api/v1/admin/servers", params, COLUMNS, limit=limit, cursor=cursor, all_pages=all_pages)


@api_command(app, "show")
def show(hub: Hub, server_id: ServerId) -> None:
    """One server (servers:read)."""
    hub.emit(hub.get(f"/api/v1/admin/servers/{server_id}"))


@api_command(app, "provider-status")
def provider_status(hub: Hub, server_id: ServerId) -> None:
    """The server's live state at its provider (servers:read)."""
    hub.emit(hub.get(f"/api/v1/admin/servers/{server_id}/provider-status"))


@api_command(app, "snapshot")
def snapshot(hub: Hub, server_id: ServerId, name: Annotated[str, typer.Option(help="The snapshot's name.")]) -> None:
    """Snapshot the server at its provider; waits for the provider's task (servers:write)."""
    hub.emit(hub.post(f"/api/v1/admin/servers/{server_id}/snapshots", {"name": name}))


@api_command(app, "retire")
def retire(hub: Hub, server_id: ServerId) -> None:
    """Retire a server (a Hetzner one is deleted there); an IN_USE server goes DRAINING first (servers:write)."""
    hub.emit(hub.post(f"/api/v1/admin/servers/{server_id}/retire"), lambda s: f"{s['id']}  {s['status']}")


@api_command(app, "held")
def held(
    hub: Hub,
    status: Annotated[str, typer.Option(help="HELD (waiting) or ASSIGNED.")] = "HELD",
    limit: Limit = None,
    cursor: CursorOpt = None,
    all_pages: AllPages = False,
) -> None:
    """MANUAL orders whose pool was empty, waiting for an operator, longest first (servers:read)."""
    params = {"status": status}
    show_list(hub, "/api/v1/admin/servers/held", params, HELD_COLUMNS, limit=limit, cursor=cursor, all_pages=all_pages)


@api_command(app, "assign")
def assign(
    hub: Hub,
    order_id: Annotated[str, typer.Argument(help="The held order's id.")],
    server: Annotated[str | None, typer.Option(help="An AVAILABLE server's id; default: any of the pool.")] = None,
) -> None:
    """Give a held order a server: it is RESERVED and the order goes on to DNS (servers:write)."""
    answer = hub.post(f"/api/v1/admin/servers/held/{order_id}/assign", {"server_id": server} if server else {})
    hub.emit(answer, lambda a: f"order {a['order_id']}  server {a['server']['id']}  {a['server']['status']}")


@api_command(app, "costs")
def costs(hub: Hub) -> None:
    """Monthly cost per provider, tier and region (servers:read)."""
    hub.emit(hub.get("/api/v1/admin/servers/costs"))


@api_command(app, "migrations")
def migrations(
    hub: Hub,
    period: Annotated[str | None, typer.Option(help="YYYY-MM; default: every period.")] = None,
    check: Annotated[bool, typer.Option("--check", help="Run the monthly check now (servers:write).")] = False,
    limit: Limit = None,
    cursor: CursorOpt = None,
    all_pages: AllPages = False,
) -> None:
    """Proposed Hetzner → Netcup migrations, newest first (servers:read)."""
    if check:
        hub.emit(hub.post("/api/v1/admin/servers/migrations/check"))
        return
    path = "/api/v1/admin/servers/migrations"
    show_list(hub, path, {"period": period}, MIGRATION_COLUMNS, limit=limit, cursor=cursor, all_pages=all_pages)


@api_command(pools, "list")
def list_pools(hub: Hub) -> None:
    """Every pool: policy and live counts (servers:read)."""
    show_list(hub, "/api/v1/admin/pools", {}, POOL_COLUMNS)


@api_command(pools, "set")
def set_pool(
    hub: Hub,
    tier: Annotated[Tier, typer.Argument()],
    region: Annotated[Region, typer.Argument()],
    min_available: Annotated[int, typer.Option("--min", help="Minimum of AVAILABLE servers.")],
    target_available: Annotated[int, typer.Option("--target", help="What replenishing aims for.")],
) -> None:
    """Set a pool's minimum and target of AVAILABLE servers (servers:write)."""
    body = {"min_available": min_available, "target_available": target_available}
    hub.emit(
        hub.call("PUT", f"/api/v1/admin/pools/{tier.value}/{region.value}", body=body),
        lambda p: table([p], POOL_COLUMNS),
    )


@api_command(pools, "check")
def check_pools(hub: Hub) -> None:
    """Run the below-minimum check now: raises or resolves the pool alerts (servers:write)."""
    hub.emit(hub.post("/api/v1/admin/pools/check"))


@api_command(pools, "replenish")
def replenish(hub: Hub) -> None:
    """Pools below minimum: what to order from Netcup (servers:read)."""
    show_list(hub, "/api/v1/admin/pools/replenish", {}, REPLENISH_COLUMNS)
