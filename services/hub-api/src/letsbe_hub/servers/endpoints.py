"""Admin API of the servers context: /api/v1/admin/servers… and /api/v1/admin/pools… (servers:read / servers:write)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from letsbe_contracts import Provider, Region, Tier
from letsbe_hub.auth.dependencies import Authorized
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.config import ServerSettings
from letsbe_hub.providers import factory
from letsbe_hub.providers.base import ServerProvider
from letsbe_hub.providers.errors import ProviderError
from letsbe_hub.servers import costs, migrations, pools, service
from letsbe_hub.servers import repository as repo
from letsbe_hub.servers.errors import ProviderCallFailed, ProviderNotConfigured
from letsbe_hub.servers.models import HoldStatus, InventoryStatus, MigrationProposal, Server
from letsbe_hub.servers.schemas import (
    Assigned,
    AssignServer,
    CostView,
    HeldOrderOut,
    MigrationCheckResult,
    MigrationProposalOut,
    PoolCheckResult,
    PoolOut,
    PoolUpdate,
    ProviderStatusOut,
    ReplenishItem,
    ServerCreate,
    ServerOut,
    SnapshotCreate,
    SnapshotOut,
)
from letsbe_platform.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from letsbe_platform.web import SessionDep, problems

router = APIRouter(prefix="/api/v1/admin/servers", tags=["servers"])
pools_router = APIRouter(prefix="/api/v1/admin/pools", tags=["pools"])
routers = [router, pools_router]

Read = Authorized(Scope.SERVERS_READ)
Write = Authorized(Scope.SERVERS_WRITE)


@asynccontextmanager
async def _provider(
    request: Request, provider: Provider, *, required: bool = True
) -> AsyncIterator[ServerProvider | None]:
    settings: ServerSettings = request.app.state.settings
    client = factory.build(settings, provider)
    if client is None and required:
        raise ProviderNotConfigured(f"No {provider.value} API credentials are configured.")
    try:
        yield client
    finally:
        if client is not None:
            await client.aclose()


def proposal_out(p: MigrationProposal) -> MigrationProposalOut:
    """The proposal's row by attribute (its Decimal saving becomes the float the schema has)."""
    return MigrationProposalOut.model_validate(p, from_attributes=True)


# --- servers ---------------------------------------------------------------------------------------------------------


@router.post("", name="register", status_code=status.HTTP_201_CREATED, summary="Register a pool server")
async def register(body: ServerCreate, session: SessionDep, principal: Write) -> ServerOut:
    return service.to_out(await service.register_server(session, body, by=principal.name))


@router.get("", name="list", summary="List servers, oldest first, filtered")
async def list_servers(
    session: SessionDep,
    _: Read,
    status_: Annotated[list[InventoryStatus] | None, Query(alias="status", description="Any of these; repeat")] = None,
    tier: Tier | None = None,
    region: Region | None = None,
    provider: Provider | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[ServerOut]:
    rows, next_cursor = await repo.list_servers(
        session,
        status=[s.value for s in status_ or ()],
        tier=tier.value if tier else None,
        region=region.value if region else None,
        provider=provider.value if provider else None,
        limit=limit,
        cursor=cursor,
    )
    return Page(items=[service.to_out(s) for s in rows], next_cursor=next_cursor)


@router.get("/held", name="held", summary="MANUAL orders waiting for an operator to assign a server, longest first")
async def held(
    session: SessionDep,
    _: Read,
    status_: Annotated[HoldStatus | None, Query(alias="status")] = HoldStatus.HELD,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[HeldOrderOut]:
    rows, next_cursor = await repo.list_holds(session, status_.value if status_ else None, limit=limit, cursor=cursor)
    return Page(items=[service.hold_out(h) for h in rows], next_cursor=next_cursor)


@router.post("/held/{order_id}/assign", name="assign_held", summary="Give a held order a server")
async def assign_held(order_id: uuid.UUID, body: AssignServer, session: SessionDep, principal: Write) -> Assigned:
    server = await service.assign_held(session, order_id, body.server_id, by=principal.name)
    return Assigned(order_id=order_id, server=service.to_out(server))


@router.get("/costs", name="costs", summary="Monthly cost per provider, tier and region")
async def cost(session: SessionDep, _: Read) -> CostView:
    return await costs.cost_view(session)


@router.get("/migrations", name="migrations", summary="Proposed Hetzner → Netcup migrations, newest first")
async def list_migrations(
    session: SessionDep,
    _: Read,
    period: Annotated[str | None, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[MigrationProposalOut]:
    rows, next_cursor = await repo.list_proposals(session, period, limit=limit, cursor=cursor)
    return Page(items=[proposal_out(p) for p in rows], next_cursor=next_cursor)


@router.post("/migrations/check", name="check_migrations", summary="Run the monthly migration check now")
async def check_migrations(session: SessionDep, _: Write) -> MigrationCheckResult:
    new = await migrations.propose_migrations(session)
    return MigrationCheckResult(period=migrations.period_of_now(), proposed=[proposal_out(p) for p in new])


@router.get("/{server_id}", name="get", summary="One server")
async def get(server_id: uuid.UUID, session: SessionDep, _: Read) -> ServerOut:
    return service.to_out(await service.get_server(session, server_id))


@router.post(
    "/{server_id}/retire",
    name="retire",
    responses=problems(502),
    summary="Retire a server (IN_USE ones go DRAINING first)",
)
async def retire(server_id: uuid.UUID, request: Request, session: SessionDep, principal: Write) -> ServerOut:
    return service.to_out(await retire_server(request, session, server_id, by=principal.name))


async def retire_server(request: Request, session: SessionDep, server_id: uuid.UUID, *, by: str) -> Server:
    """Retire with the provider client the server needs (the API route and the console's action)."""
    server = await service.get_server(session, server_id)
    if server.provider != Provider.HETZNER:  # Netcup contracts are cancelled by hand: nothing to call
        return await service.retire_server(session, server_id, None, by=by)
    async with _provider(request, Provider.HETZNER, required=False) as client:
        return await service.retire_server(session, server_id, client, by=by)


@router.get(
    "/{server_id}/provider-status",
    name="provider_status",
    responses=problems(502),
    summary="Live state at the provider",
)
async def provider_status(server_id: uuid.UUID, request: Request, session: SessionDep, _: Read) -> ProviderStatusOut:
    server = await service.get_server(session, server_id)
    async with _provider(request, Provider(server.provider)) as client:
        assert client is not None
        try:
            st = await client.get_server_status(server.provider_ref)
        except ProviderError as exc:
            raise ProviderCallFailed(str(exc)) from exc
    return ProviderStatusOut(
        server_id=server.id,
        provider=st.provider,
        provider_ref=st.provider_ref,
        state=st.state.value,
        provider_state=st.provider_state,
        ipv4=list(st.ipv4),
    )


@router.post(
    "/{server_id}/snapshots",
    name="snapshot",
    status_code=status.HTTP_201_CREATED,
    responses=problems(502),
    summary="Snapshot the server at its provider (waits for the provider's task)",
)
async def snapshot(
    server_id: uuid.UUID, body: SnapshotCreate, request: Request, session: SessionDep, _: Write
) -> SnapshotOut:
    server = await service.get_server(session, server_id)
    async with _provider(request, Provider(server.provider)) as client:
        assert client is not None
        try:
            snap = await client.create_snapshot(server.provider_ref, name=body.name)
        except ProviderError as exc:
            raise ProviderCallFailed(str(exc)) from exc
    return SnapshotOut(
        server_id=server.id,
        provider=snap.provider,
        snapshot_ref=snap.snapshot_ref,
        name=snap.name,
        created_at=snap.created_at,
    )


# --- pools -----------------------------------------------------------------------------------------------------------


# One pool per tier and region: these lists are whole in one page (next_cursor is always null).


@pools_router.get("", name="list", summary="Pools with their policy and live counts (one page)")
async def list_pools(session: SessionDep, _: Read) -> Page[PoolOut]:
    return Page(items=await pools.pool_views(session), next_cursor=None)


@pools_router.get("/replenish", name="replenish", summary="Pools below minimum: what to order from Netcup (one page)")
async def replenish(session: SessionDep, _: Read) -> Page[ReplenishItem]:
    return Page(items=await pools.replenish_list(session), next_cursor=None)


@pools_router.post("/check", name="check", summary="Run the below-minimum check now")
async def check(session: SessionDep, _: Write) -> PoolCheckResult:
    return await pools.check_pools(session)


@pools_router.put("/{tier}/{region}", name="set", summary="Set a pool's minimum and target")
async def set_pool(tier: Tier, region: Region, body: PoolUpdate, session: SessionDep, principal: Write) -> PoolOut:
    return await pools.set_pool(session, tier, region, body.min_available, body.target_available, by=principal.name)
