"""``letsbe-hub servers …``: register, list and retire pool servers and size pools, straight in the database."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts import Provider, Region, Tier
from letsbe_hub.cli_session import run_in_session
from letsbe_hub.config import HubSettings
from letsbe_hub.providers.factory import build_hetzner
from letsbe_hub.servers import pools, service
from letsbe_hub.servers import repository as repo
from letsbe_hub.servers.models import InventoryStatus
from letsbe_hub.servers.schemas import PoolUpdate, ServerCreate

T = TypeVar("T")

app = typer.Typer(help="Pool servers and pool sizes", no_args_is_help=True)


def _echo(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@app.command("add")
def add(
    provider_ref: Annotated[str, typer.Option(help="the provider's server id (Netcup SCP id)")],
    tier: Annotated[Tier, typer.Option()],
    region: Annotated[Region, typer.Option()],
    ipv4: Annotated[str, typer.Option()],
    provider: Annotated[Provider, typer.Option()] = Provider.NETCUP,
    ipv6: Annotated[str | None, typer.Option()] = None,
    name: Annotated[str | None, typer.Option()] = None,
    ssh_port: Annotated[int, typer.Option()] = 22,
    ssh_user: Annotated[str, typer.Option()] = "letsbe",
    host_key_fingerprint: Annotated[str | None, typer.Option(help="SHA256:…; read from the server if omitted")] = None,
    contract_end: Annotated[str | None, typer.Option(help="YYYY-MM-DD, end of the Netcup term")] = None,
) -> None:
    """Register an installed pool server as AVAILABLE."""
    try:
        body = ServerCreate.model_validate(
            {
                k: v
                for k, v in {
                    "provider": provider,
                    "provider_ref": provider_ref,
                    "tier": tier,
                    "region": region,
                    "ipv4": ipv4,
                    "ipv6": ipv6,
                    "name": name,
                    "ssh_port": ssh_port,
                    "ssh_user": ssh_user,
                    "host_key_fingerprint": host_key_fingerprint,
                    "contract_end": contract_end,
                }.items()
                if v is not None
            }
        )
    except ValidationError as exc:
        raise typer.BadParameter(
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        ) from exc

    async def work(session: AsyncSession, _: HubSettings) -> dict[str, Any]:
        return service.to_out(await service.register_server(session, body)).model_dump(mode="json")

    _echo(run_in_session(work))


@app.command("list")
def list_(
    status: Annotated[InventoryStatus | None, typer.Option()] = None,
    tier: Annotated[Tier | None, typer.Option()] = None,
    region: Annotated[Region | None, typer.Option()] = None,
    provider: Annotated[Provider | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 100,
) -> None:
    """List servers, one line each: id, provider/ref, tier/region, ipv4, status, order."""

    async def work(session: AsyncSession, _: HubSettings) -> list[str]:
        rows, _total = await repo.list_servers(
            session,
            status=status.value if status else None,
            tier=tier.value if tier else None,
            region=region.value if region else None,
            provider=provider.value if provider else None,
            limit=limit,
        )
        return [
            f"{s.id}  {s.provider}/{s.provider_ref}  {s.tier}/{s.region}  {s.ipv4}  {s.status}  {s.order_id or '-'}"
            for s in rows
        ]

    for line in run_in_session(work):
        typer.echo(line)


@app.command("retire")
def retire(server_id: uuid.UUID) -> None:
    """Retire a server (a Hetzner one is deleted there); an IN_USE server goes DRAINING first."""

    async def work(session: AsyncSession, settings: HubSettings) -> dict[str, Any]:
        hetzner = build_hetzner(settings)
        try:
            return service.to_out(await service.retire_server(session, server_id, hetzner)).model_dump(mode="json")
        finally:
            if hetzner is not None:
                await hetzner.aclose()

    _echo(run_in_session(work))


@app.command("pool")
def pool(
    tier: Tier,
    region: Region,
    min_available: Annotated[int, typer.Option("--min")],
    target_available: Annotated[int, typer.Option("--target")],
) -> None:
    """Set a pool's minimum and target of AVAILABLE servers."""
    try:
        body = PoolUpdate(min_available=min_available, target_available=target_available)
    except ValidationError as exc:
        raise typer.BadParameter("; ".join(e["msg"] for e in exc.errors())) from exc

    async def work(session: AsyncSession, _: HubSettings) -> dict[str, Any]:
        view = await pools.set_pool(session, tier, region, body.min_available, body.target_available)
        return view.model_dump(mode="json")

    _echo(run_in_session(work))


@app.command("pools")
def pools_() -> None:
    """Every pool: policy and live counts."""

    async def work(session: AsyncSession, _: HubSettings) -> list[dict[str, Any]]:
        return [p.model_dump(mode="json") for p in await pools.pool_views(session)]

    _echo(run_in_session(work))
