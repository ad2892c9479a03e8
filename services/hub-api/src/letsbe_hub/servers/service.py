"""Inventory rules: register, list, retire, reserve, and assign servers to held (MANUAL) orders."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv6Address

from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts import OrderSpec, Provider, ServerAllocatedV1, ServerTarget
from letsbe_hub.db import outbox
from letsbe_hub.providers.base import ServerAllocator
from letsbe_hub.providers.errors import ProviderError
from letsbe_hub.servers import repository as repo
from letsbe_hub.servers.errors import (
    HoldNotFound,
    HostKeyUnreadable,
    NoServerAvailable,
    ProviderCallFailed,
    ProviderNotConfigured,
    ServerConflict,
    ServerNotFound,
)
from letsbe_hub.servers.models import SERVER, AllocationHold, HoldStatus, InventoryStatus, Server
from letsbe_hub.servers.reachability import read_host_key
from letsbe_hub.servers.schemas import HeldOrderOut, ServerCreate, ServerOut
from letsbe_platform import state
from letsbe_platform.logging import get_logger
from letsbe_platform.outbox import add_event

log = get_logger(__name__)


def target(server: Server) -> ServerTarget:
    return ServerTarget(
        server_id=server.id,
        provider=Provider(server.provider),
        provider_ref=server.provider_ref,
        ipv4=IPv4Address(server.ipv4),
        ipv6=IPv6Address(server.ipv6) if server.ipv6 else None,
        ssh_port=server.ssh_port,
        ssh_user=server.ssh_user,
        host_key_fingerprint=server.host_key_fingerprint,
    )


async def reserve(session: AsyncSession, server: Server, order_id: uuid.UUID) -> None:
    """Hand the (locked) server to the order. tenant_id == order_id (one tenant per order)."""
    values = {"order_id": order_id, "tenant_id": order_id, "reserved_at": datetime.now(UTC)}
    await state.move(session, SERVER, server, InventoryStatus.RESERVED, actor="hub", **values)


async def emit_allocated(session: AsyncSession, order: OrderSpec, server: Server, *, cause: uuid.UUID) -> None:
    """Stage server-allocated in the caller's transaction; the id derives from the cause, so a repeat stages once."""
    await add_event(
        session,
        outbox,
        ServerAllocatedV1(order=order, server=target(server)),
        correlation_id=str(order.order_id),
        event_id=uuid.uuid5(cause, "server-allocated"),
    )


def to_out(server: Server) -> ServerOut:
    return ServerOut(
        id=server.id,
        provider=Provider(server.provider),
        provider_ref=server.provider_ref,
        name=server.name,
        tier=server.tier,
        region=server.region,
        ipv4=server.ipv4,
        ipv6=server.ipv6,
        ssh_port=server.ssh_port,
        ssh_user=server.ssh_user,
        host_key_fingerprint=server.host_key_fingerprint,
        status=InventoryStatus(server.status),
        order_id=server.order_id,
        tenant_id=server.tenant_id,
        contract_end=server.contract_end,
        billing="12-month contract" if server.provider == Provider.NETCUP else "hourly",
        created_at=server.created_at,
        reserved_at=server.reserved_at,
        retired_at=server.retired_at,
        registered_by=server.registered_by,
        retired_by=server.retired_by,
    )


def hold_out(hold: AllocationHold) -> HeldOrderOut:
    return HeldOrderOut(
        order_id=hold.order_id,
        tier=hold.tier,
        region=hold.region,
        domain=str(hold.order_spec.get("domain", "")),
        status=HoldStatus(hold.status),
        reason=hold.reason,
        held_at=hold.held_at,
        server_id=hold.server_id,
        assigned_at=hold.assigned_at,
        assigned_by=hold.assigned_by,
    )


# --- inventory -------------------------------------------------------------------------------------------------------


async def register_server(
    session: AsyncSession, body: ServerCreate, *, by: str | None = None, probe_timeout: float = 10.0
) -> Server:
    if await repo.find_server(session, body.provider.value, body.provider_ref) is not None:
        raise ServerConflict(f"{body.provider.value} server {body.provider_ref} is already registered.")
    fingerprint = body.host_key_fingerprint
    if fingerprint is None:
        try:
            fingerprint = await read_host_key(str(body.ipv4), body.ssh_port, timeout=probe_timeout)
        except Exception as exc:
            raise HostKeyUnreadable(
                f"Could not read the SSH host key of {body.ipv4}:{body.ssh_port} ({type(exc).__name__}); "
                "pass host_key_fingerprint instead."
            ) from exc
    server = await repo.add_server(
        session,
        provider=body.provider.value,
        provider_ref=body.provider_ref,
        name=body.name or f"{body.provider.value}-{body.provider_ref}",
        tier=body.tier.value,
        region=body.region.value,
        ipv4=str(body.ipv4),
        ipv6=str(body.ipv6) if body.ipv6 else None,
        ssh_port=body.ssh_port,
        ssh_user=body.ssh_user,
        host_key_fingerprint=fingerprint,
        status=InventoryStatus.AVAILABLE.value,
        contract_end=body.contract_end,
        registered_by=by,
    )
    await session.refresh(server)
    log.info(
        "pool server registered",
        server_id=str(server.id),
        provider=server.provider,
        tier=server.tier,
        region=server.region,
        by=by,
    )
    return server


async def get_server(session: AsyncSession, server_id: uuid.UUID) -> Server:
    server = await repo.get_server(session, server_id)
    if server is None:
        raise ServerNotFound(f"No server {server_id}.")
    return server


async def retire_server(
    session: AsyncSession, server_id: uuid.UUID, provider: ServerAllocator | None, *, by: str | None = None
) -> Server:
    """AVAILABLE/DRAINING → RETIRED (a Hetzner server is deleted there first, so it stops costing money);
    IN_USE → DRAINING (its tenant has to move first); RESERVED → 409 (an order is being set up on it)."""
    server = await repo.lock_server(session, server_id)
    if server is None:
        raise ServerNotFound(f"No server {server_id}.")
    status = InventoryStatus(server.status)
    if status is InventoryStatus.RETIRED:
        return server
    if status is InventoryStatus.RESERVED:
        raise ServerConflict(f"Server {server_id} is reserved for order {server.order_id}; retire it once in use.")
    if status is InventoryStatus.IN_USE:
        log.info("server draining before retirement", server_id=str(server.id), by=by)
        # who asked is kept: it is retired once its tenant has moved
        return await state.move(
            session, SERVER, server, InventoryStatus.DRAINING, actor=by or "operator", retired_by=by
        )
    if server.provider == Provider.HETZNER:
        if provider is None:
            raise ProviderNotConfigured("Retiring a Hetzner server deletes it there; no Hetzner token is configured.")
        try:
            await provider.deallocate_server(server.provider_ref)
        except ProviderError as exc:
            raise ProviderCallFailed(str(exc)) from exc
    await state.move(
        session,
        SERVER,
        server,
        InventoryStatus.RETIRED,
        actor=by or "operator",
        retired_at=datetime.now(UTC),
        retired_by=by or server.retired_by,
    )
    log.info("server retired", server_id=str(server.id), provider=server.provider, by=by)
    return server


# --- held orders -----------------------------------------------------------------------------------------------------


async def assign_held(session: AsyncSession, order_id: uuid.UUID, server_id: uuid.UUID | None, *, by: str) -> Server:
    """An operator gives a held (MANUAL) order a server: reserved + server-allocated in this transaction."""
    hold = await repo.lock_hold(session, order_id)
    if hold is None:
        raise HoldNotFound(f"Order {order_id} is not waiting for a server.")
    if hold.status != HoldStatus.HELD:
        raise ServerConflict(f"Order {order_id} was already assigned server {hold.server_id}.")
    if server_id is not None:
        server = await repo.lock_server(session, server_id)
        if server is None:
            raise ServerNotFound(f"No server {server_id}.")
        if server.status != InventoryStatus.AVAILABLE:
            raise ServerConflict(f"Server {server_id} is {server.status}, not AVAILABLE.")
        if (server.tier, server.region) != (hold.tier, hold.region):
            raise ServerConflict(
                f"Server {server_id} is {server.tier}/{server.region}; the order needs {hold.tier}/{hold.region}."
            )
    else:
        server = await repo.lock_available_server(session, hold.tier, hold.region)
        if server is None:
            raise NoServerAvailable(f"No AVAILABLE {hold.tier} server in the {hold.region} pool.")
    order = OrderSpec.model_validate(hold.order_spec)
    await reserve(session, server, order.order_id)
    await repo.resolve_hold(session, order.order_id, server.id, by)
    await emit_allocated(session, order, server, cause=uuid.uuid5(order.order_id, f"assign:{server.id}"))
    await session.flush()
    log.info("held order assigned", order_id=str(order_id), server_id=str(server.id), by=by)
    return server
