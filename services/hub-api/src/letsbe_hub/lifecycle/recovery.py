"""Restore, recovery of a lost server, and migration Hetzner -> Netcup: the steps of those lifecycle jobs.

What happens on a tenant's server is one task of the lifecycle exchange (``letsbe_hub.lifecycle.exchange``):
provision, backup, restore, verify (the provisioner, over SSH) or switch-dns (the DNS service). The ask and its
record commit together and the owner runs a request id once, so a worker killed at any point resumes the step
without a second effect: one restore, one DNS switch.

Servers: a recovery takes an AVAILABLE pool server of the tenant's tier and region (a Netcup one first); a
migration takes the proposal's Netcup server. The old server is deleted through its provider (Hetzner) or drained
(Netcup) with the decommission's ``release_server``: gone already counts as deleted, so it is deleted once.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts import OrderSpec
from letsbe_contracts.events import ServerOperation
from letsbe_hub.lifecycle import repository as repo
from letsbe_hub.lifecycle import state
from letsbe_hub.lifecycle.models import JobStatus as J
from letsbe_hub.lifecycle.models import LifecycleJob
from letsbe_hub.lifecycle.state import MIGRATE, RECOVER, RESTORE
from letsbe_hub.orders.models import Order
from letsbe_hub.orders.service import spec
from letsbe_hub.servers.models import SERVER, InventoryStatus, MigrationProposal, Server
from letsbe_hub.servers.service import target
from letsbe_hub.tenants.models import BackupReportRow, Tenant, TenantState
from letsbe_platform import state as platform_state
from letsbe_platform.errors import Conflict, NotFound

MOVED = frozenset({J.ROLLBACK_WINDOW, J.RELEASING_OLD})


class OperationFailed(Exception):
    """No server is free to recover onto: a failed attempt of the step (retried with the runner's backoff)."""


# --- starting jobs ---------------------------------------------------------------------------------------------------


async def _tenant(session: AsyncSession, tenant_id: uuid.UUID) -> Tenant:
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound("No tenant with that id.", tenant_id=str(tenant_id))
    if tenant.status == TenantState.DECOMMISSIONED:
        raise Conflict("The tenant is decommissioned: nothing to restore.", tenant_id=str(tenant_id))
    return tenant


async def backups(session: AsyncSession, tenant_id: uuid.UUID, limit: int) -> list[BackupReportRow]:
    """The backup sets the tenant's Safety Wrapper reported (one per day, newest first)."""
    await _tenant(session, tenant_id)
    stmt = (
        select(BackupReportRow)
        .where(BackupReportRow.tenant_id == tenant_id)
        .order_by(BackupReportRow.report_date.desc())
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


async def start_restore(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    *,
    backup_set: str,
    tool: str | None,
    server_id: uuid.UUID | None,
    actor: str,
    reason: str | None,
    now: datetime,
) -> tuple[LifecycleJob, bool]:
    tenant = await _tenant(session, tenant_id)
    if tool is not None and tool not in (await order_of(session, tenant_id)).tools:
        raise Conflict(f"The tenant has no tool {tool}.", tenant_id=str(tenant_id), tool=tool)
    server_id = server_id or tenant.server_id
    server = await session.get(Server, server_id) if server_id else None
    if server is None or server.tenant_id != tenant_id or server.status == InventoryStatus.RETIRED.value:
        raise Conflict("That is not a server of this tenant to restore on.", tenant_id=str(tenant_id))
    await _no_other_job(session, tenant_id, RESTORE)
    # One job per request: an operator's second restore of the same set is a new job (a new effect).
    return await state.create(
        session,
        kind=RESTORE,
        key=f"restore:{tenant_id}:{uuid.uuid4()}",
        tenant_id=tenant_id,
        server_id=server_id,
        due_at=now,
        actor=actor,
        reason=reason,
        data={"backup_set": backup_set, "tool": tool, "target_server_id": str(server_id)},
    )


async def start_recovery(
    session: AsyncSession, tenant_id: uuid.UUID, *, actor: str, reason: str | None, now: datetime
) -> tuple[LifecycleJob, bool]:
    """One recovery per tenant at a time: asking again while one runs answers that one."""
    tenant = await _tenant(session, tenant_id)
    running = await _running(session, tenant_id, RECOVER)
    if running is not None:
        return running, False
    await _no_other_job(session, tenant_id, RECOVER)
    return await state.create(
        session,
        kind=RECOVER,
        key=f"recover:{tenant_id}:{now:%Y%m%dT%H%M%S}",
        tenant_id=tenant_id,
        server_id=tenant.server_id,
        due_at=now,
        actor=actor,
        reason=reason or "the tenant's server is lost",
        data={"backup_set": "latest", "started_at": now.isoformat()},
    )


async def start_migration(
    session: AsyncSession, proposal_id: uuid.UUID, *, actor: str, now: datetime
) -> tuple[LifecycleJob, bool]:
    """The migration of one monthly proposal (once per proposal: its key)."""
    proposal = await session.get(MigrationProposal, proposal_id)
    if proposal is None:
        raise NotFound("No migration proposal with that id.", proposal_id=str(proposal_id))
    key = f"migrate:{proposal_id}"
    existing = (await session.execute(select(LifecycleJob).where(LifecycleJob.key == key))).scalar_one_or_none()
    if existing is not None:
        return existing, False
    await _tenant(session, proposal.tenant_id)
    await _no_other_job(session, proposal.tenant_id, MIGRATE)
    target_server = await session.get(Server, proposal.to_server_id, with_for_update=True)
    if target_server is None or target_server.status != InventoryStatus.AVAILABLE.value:
        raise Conflict("The proposal's Netcup server is no longer AVAILABLE.", proposal_id=str(proposal_id))
    await _reserve_second(session, target_server, proposal.tenant_id, now)
    return await state.create(
        session,
        kind=MIGRATE,
        key=key,
        tenant_id=proposal.tenant_id,
        server_id=proposal.from_server_id,
        due_at=now,
        actor=actor,
        reason=f"migration proposal {proposal.period}: saves {proposal.monthly_saving_eur} EUR a month",
        data={"proposal_id": str(proposal_id), "target_server_id": str(proposal.to_server_id), "backup_set": "latest"},
    )


async def start_proposed_migrations(session: AsyncSession, now: datetime) -> int:
    """Policy ``migrations_auto``: every proposal of the month without a job gets one."""
    period = now.astimezone(UTC).strftime("%Y-%m")
    proposals = (await session.execute(select(MigrationProposal).where(MigrationProposal.period == period))).scalars()
    started = 0
    for p in list(proposals):
        try:
            async with session.begin_nested():
                _, new = await start_migration(session, p.id, actor="migration-policy", now=now)
        except (Conflict, NotFound):
            continue  # its target was taken meanwhile, another job of the tenant runs, …: next month's check
        started += int(new)
    return started


async def _running(session: AsyncSession, tenant_id: uuid.UUID, kind: str) -> LifecycleJob | None:
    stmt = select(LifecycleJob).where(
        LifecycleJob.tenant_id == tenant_id, LifecycleJob.kind == kind, LifecycleJob.finished_at.is_(None)
    )
    return (await session.execute(stmt.limit(1))).scalar_one_or_none()


async def _no_other_job(session: AsyncSession, tenant_id: uuid.UUID, kind: str) -> None:
    """Restore, recovery and migration each rewrite the tenant's data: one of them at a time."""
    for other in (RESTORE, RECOVER, MIGRATE):
        job = await _running(session, tenant_id, other)
        if job is not None and job.status in MOVED:
            continue  # the tenant is on its new server already; only the old one waits for its release
        if job is not None and not (other == kind == RECOVER):
            raise Conflict(
                f"A {other} job of this tenant is not finished ({job.status}).",
                tenant_id=str(tenant_id),
                job_id=str(job.id),
            )


async def operation(
    session: AsyncSession, job: LifecycleJob, kind: Any, server_id: object, **args: Any
) -> ServerOperation:
    """The job's ``kind`` operation on a server, with the tenant's order (its tools)."""
    server = await session.get(Server, uuid.UUID(str(server_id)))
    assert server is not None
    return ServerOperation(kind=kind, order=await order_of(session, job.tenant_id), server=target(server), **args)


# --- what each step needs -----------------------------------------------------------------------------------------


async def order_of(session: AsyncSession, tenant_id: uuid.UUID) -> OrderSpec:
    tenant = await session.get(Tenant, tenant_id)
    order = await session.get(Order, tenant.order_id) if tenant else None
    if order is None:
        raise Conflict("The tenant has no order (its tools are unknown).", tenant_id=str(tenant_id))
    return spec(order)


async def claim_pool_server(session: AsyncSession, job: LifecycleJob, now: datetime) -> Server:
    """The recovery's new server: the one it reserved before (a resumed step), or an AVAILABLE pool server of the
    tenant's tier and region (Netcup first), reserved for the tenant in this transaction."""
    if job.data.get("target_server_id"):
        server = await session.get(Server, uuid.UUID(job.data["target_server_id"]))
        assert server is not None
        return server
    tenant = await session.get(Tenant, job.tenant_id)
    assert tenant is not None
    stmt = (
        select(Server)
        .where(
            Server.status == InventoryStatus.AVAILABLE.value,
            Server.tier == tenant.tier,
            Server.region == tenant.region,
            Server.id != job.server_id,
        )
        .order_by((Server.provider == "netcup").desc(), Server.created_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    server = (await session.execute(stmt)).scalar_one_or_none()
    if server is None:
        raise OperationFailed(f"no AVAILABLE {tenant.tier}/{tenant.region} pool server to recover onto")
    await _reserve_second(session, server, tenant.id, now)
    await repo.set_data_key(session, job.id, "target_server_id", str(server.id))
    return server


async def _reserve_second(session: AsyncSession, server: Server, tenant_id: uuid.UUID, now: datetime) -> None:
    """The tenant's second server while it moves: its order stays on the old one (one held server per order) until
    the DNS switch hands the order over (``move_tenant``)."""
    await platform_state.move(
        session,
        SERVER,
        server,
        InventoryStatus.RESERVED,
        actor="lifecycle-worker",
        tenant_id=tenant_id,
        reserved_at=now,
    )


async def move_tenant(session: AsyncSession, job: LifecycleJob, new_server: Server, now: datetime) -> None:
    """After the DNS switch the tenant (and its order) live on the new server; the old one, still the tenant's,
    waits for its release. The order's server target names the new server: what the order shows, and what a
    re-provisioning of it would target."""
    tenant = await session.get(Tenant, job.tenant_id)
    assert tenant is not None
    await session.execute(update(Tenant).where(Tenant.id == job.tenant_id).values(server_id=new_server.id))
    await session.execute(
        update(Order)
        .where(Order.id == tenant.order_id)
        .values(server_target=target(new_server).model_dump(mode="json"), updated_at=now)
    )
    await session.execute(
        update(Server).where(Server.order_id == tenant.order_id, Server.id != new_server.id).values(order_id=None)
    )
    await platform_state.transition(
        session,
        SERVER,
        new_server.id,
        InventoryStatus.RESERVED,
        InventoryStatus.IN_USE,
        actor="lifecycle-worker",
        order_id=tenant.order_id,
        updated_at=now,
    )


def duration(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 1)
