"""The rules of the lifecycle jobs: what each step does, and how the day's snapshots are planned.

Every step is safe to run again after a crash at any point, because it first asks whoever holds the effect whether
it already happened: a decommission deletes the server unless the provider says it is gone (404), reinstalls a
Netcup server unless an install it started is found at netcup, asks the provisioner for the job's final backup
(the server takes one per job); a snapshot is created only when the server has none of
that job's name yet (the name is derived from the job's key).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts.enums import AlertSeverity
from letsbe_contracts.events import AlertRaisedV1, AlertResolvedV1
from letsbe_hub.db import outbox
from letsbe_hub.lifecycle import repository as repo
from letsbe_hub.lifecycle import state
from letsbe_hub.lifecycle.models import JobStatus as J
from letsbe_hub.lifecycle.models import LifecycleJob
from letsbe_hub.lifecycle.state import DECOMMISSION, SNAPSHOT
from letsbe_hub.providers.base import ServerAllocator, ServerProvider, ServerState, SnapshotResult
from letsbe_hub.providers.errors import ProviderNotFound
from letsbe_hub.providers.netcup import NetcupProvider
from letsbe_hub.servers.models import SERVER, InventoryStatus, Server
from letsbe_hub.servers.reachability import wait_for_host_key
from letsbe_hub.tenants.models import Tenant, TenantState
from letsbe_platform import state as platform_state
from letsbe_platform.logging import get_logger
from letsbe_platform.outbox import add_event
from letsbe_platform.waiting import Backoff

log = get_logger(__name__)

SNAPSHOT_FAILED_RULE = "snapshot.failed"
DAY = 86400
ACTOR = "lifecycle-worker"


class Wait(Exception):
    """The step's effect is under way at the provider (or a report is awaited): come back in a moment (not a failed
    attempt), or in ``seconds`` when the step knows when to look again."""

    def __init__(self, why: str, seconds: float | None = None):
        super().__init__(why)
        self.seconds = seconds  # None: the provider poll interval


# --- decommission ---------------------------------------------------------------------------------------------------


def decommission_key(tenant_id: uuid.UUID) -> str:
    return f"decommission:{tenant_id}"


async def request_decommission(
    session: AsyncSession,
    tenant: Tenant,
    *,
    reason: str,
    actor: str,
    export_window: timedelta,
    now: datetime,
) -> LifecycleJob:
    """The decommission job of the tenant (one per tenant): a final backup and the agents stopped at once, then its
    server is released once the window ends. Without a server it only waits for the window."""
    server_id = tenant.server_id or await _held_server(session, tenant)
    export_until = now + export_window
    job, _ = await state.create(
        session,
        kind=DECOMMISSION,
        key=decommission_key(tenant.id),
        tenant_id=tenant.id,
        server_id=server_id,
        due_at=now if server_id else export_until,
        actor=actor,
        reason=reason,
        data={"export_until": export_until.isoformat()},
        status=None if server_id else J.EXPORT_WINDOW,
    )
    return job


# The decommission states whose work the provisioner does on the server, and what it is called there.
SERVER_TASKS = {J.FINAL_BACKUP: "final-backup", J.STOPPING_AGENTS: "stop-agents"}


async def _held_server(session: AsyncSession, tenant: Tenant) -> uuid.UUID | None:
    stmt = select(Server.id).where(
        (Server.tenant_id == tenant.id) | (Server.order_id == tenant.order_id),
        Server.status != InventoryStatus.RETIRED.value,
    )
    return (await session.execute(stmt.limit(1))).scalar_one_or_none()


async def release_server(server: Server | None, provider: ServerProvider | None) -> tuple[str, str]:
    """Delete a Hetzner server (unless it is gone already); a Netcup pool server is only drained here.

    Returns (what happened, the inventory status the server row gets)."""
    if server is None:
        return "no server was recorded for this tenant", ""
    if server.provider == "netcup":
        # A pool server is ours for its 12-month term: it must be wiped and pass a fresh preflight before another
        # tenant gets it. Until that is automated it leaves the pool as DRAINING for an operator.
        return f"netcup server {server.provider_ref} drained: wipe, reinstall and preflight it", "DRAINING"
    if not isinstance(provider, ServerAllocator):  # None: not configured
        raise RuntimeError(f"no {server.provider} provider is configured")
    try:
        await provider.get_server_status(server.provider_ref)
    except ProviderNotFound:
        return f"{server.provider} server {server.provider_ref} was already gone", InventoryStatus.RETIRED.value
    await provider.deallocate_server(server.provider_ref)  # a 404 here (deleted meanwhile) is fine, too
    return f"{server.provider} server {server.provider_ref} deleted", InventoryStatus.RETIRED.value


# --- a Netcup pool server: wiped and reinstalled, then preflighted before it rejoins the pool ------------------------


async def start_reinstall(session: AsyncSession, job: LifecycleJob, owner: str, now: datetime) -> None:
    """Write down that the reinstall is about to be asked for, before asking: a worker killed right after the POST
    then looks for the install it started (``NetcupProvider.reinstall_task_since``) instead of starting another.
    The server is DRAINING from here until its preflight passed: out of the pool, nobody's to hand out."""
    await repo.set_data_key(session, job.id, "reinstall", {"requested_at": now.isoformat()}, owner=owner)
    await platform_state.try_transition(
        session, SERVER, job.server_id, None, InventoryStatus.DRAINING, actor="lifecycle-worker", updated_at=now
    )


async def reinstall(
    job: LifecycleJob, server: Server, provider: NetcupProvider, *, image: str, ssh_key_ids: list[int], mark: Any
) -> str:
    """The install task of this job on the server: found again, or started now (``mark`` commits the intent first).
    Waits until netcup finished it; returns its uuid."""
    entry = job.data.get("reinstall") or {}
    task = entry.get("task")
    if task is None and "requested_at" in entry:
        task = await provider.reinstall_task_since(server.provider_ref, datetime.fromisoformat(entry["requested_at"]))
    if task is None:
        await mark()
        task = await provider.start_reinstall(server.provider_ref, image=image, hostname=None, ssh_key_ids=ssh_key_ids)
    await provider.wait_task(task)
    return task


async def preflight(server: Server, provider: ServerProvider, *, timeout: float, backoff: Backoff) -> str:
    """A fresh preflight of a reinstalled server: running at the provider and answering SSH. Returns the new host
    key's fingerprint (a new install has a new key: the old pin would refuse every later SSH session)."""
    status = await provider.get_server_status(server.provider_ref)
    if status.state is not ServerState.RUNNING:
        raise Wait(f"{server.provider} server {server.provider_ref} is {status.provider_state}, not running yet")
    return await wait_for_host_key(
        server.ipv4, server.ssh_port, timeout=timeout, backoff=backoff, provider=server.provider
    )


async def return_to_pool(session: AsyncSession, job: LifecycleJob, owner: str, fingerprint: str, now: datetime) -> None:
    """The preflighted server is AVAILABLE again, nobody's, its new host key pinned; the job is done."""
    await platform_state.transition(
        session,
        SERVER,
        job.server_id,
        InventoryStatus.DRAINING,
        InventoryStatus.AVAILABLE,
        actor="lifecycle-worker",
        order_id=None,
        tenant_id=None,
        reserved_at=None,
        host_key_fingerprint=fingerprint,
        updated_at=now,
    )
    await state.transition(
        session,
        job.id,
        J.SUCCEEDED,
        actor=ACTOR,
        reason=f"reinstalled and preflighted (SSH answers, host key {fingerprint}): back in the pool",
        expected=J.PREFLIGHT,
        lease_owner=owner,
        data={**job.data, "host_key_fingerprint": fingerprint},
    )


async def finish_release(
    session: AsyncSession,
    job: LifecycleJob,
    owner: str,
    outcome: str,
    server_status: str,
    now: datetime,
    *,
    expected: str = J.RELEASING_SERVER,
    data: dict[str, Any] | None = None,
) -> None:
    if job.server_id is not None and server_status:
        retired = {"retired_at": now} if server_status == InventoryStatus.RETIRED else {}
        await platform_state.try_transition(
            session, SERVER, job.server_id, None, server_status, actor="lifecycle-worker", updated_at=now, **retired
        )
    await state.transition(
        session,
        job.id,
        J.SUCCEEDED,
        actor="lifecycle-worker",
        reason=outcome,
        expected=expected,
        lease_owner=owner,
        data=data if data is not None else {**job.data, "server_outcome": outcome},
    )


# --- snapshots -----------------------------------------------------------------------------------------------------


def slot_of(tenant_id: uuid.UUID, day: date) -> datetime:
    """The tenant's snapshot time on ``day``: spread over the day by a stable hash, so the fleet's snapshots do
    not hit the provider at once and a tenant keeps its time from day to day."""
    offset = int.from_bytes(hashlib.sha256(tenant_id.bytes).digest()[:8], "big") % DAY
    return datetime.combine(day, time(0), tzinfo=UTC) + timedelta(seconds=offset)


def snapshot_key(tenant_id: uuid.UUID, day: date) -> str:
    return f"snapshot:{tenant_id}:{day.isoformat()}"


def snapshot_name(tenant_id: uuid.UUID, day: date) -> str:
    return f"letsbe-{tenant_id}-{day:%Y%m%d}"


async def plan_snapshots(session: AsyncSession, now: datetime) -> int:
    """Give every active tenant with a server its next snapshot job: at its slot today, or tomorrow once today's
    slot has passed (so a hub that starts late does not fire every missed slot at once). Once per tenant and day:
    the key is unique, so replicas planning at the same time make one job."""
    today = now.astimezone(UTC).date()
    rows = (
        await session.execute(
            select(Tenant.id, Server.id)
            .join(Server, Server.id == Tenant.server_id)
            .where(
                Tenant.status == TenantState.ACTIVE,
                Server.status.in_((InventoryStatus.IN_USE, InventoryStatus.RESERVED)),
            )
        )
    ).all()
    wanted = []
    for tenant_id, server_id in rows:
        day = today if slot_of(tenant_id, today) > now else today + timedelta(days=1)
        wanted.append((tenant_id, server_id, day))
    have = await repo.existing_keys(session, [snapshot_key(t, d) for t, _, d in wanted])
    created = 0
    for tenant_id, server_id, day in wanted:
        key = snapshot_key(tenant_id, day)
        if key in have:
            continue
        _, new = await state.create(
            session,
            kind=SNAPSHOT,
            key=key,
            tenant_id=tenant_id,
            server_id=server_id,
            due_at=slot_of(tenant_id, day),
            actor="snapshot-planner",
            data={"day": day.isoformat(), "name": snapshot_name(tenant_id, day)},
        )
        created += int(new)
    return created


async def take_snapshot(server: Server, provider: ServerProvider, name: str) -> SnapshotResult:
    """The snapshot called ``name``: found at the provider if an earlier try created it, else created now."""
    for snap in await provider.list_snapshots(server.provider_ref):
        if snap.name == name:
            if not snap.ready:
                raise Wait(f"snapshot {snap.snapshot_ref} is still being created")
            return snap
    return await provider.create_snapshot(server.provider_ref, name=name)


def snapshot_data(job: LifecycleJob, snap: SnapshotResult) -> dict[str, Any]:
    return {
        **job.data,
        "provider": str(snap.provider),
        "provider_ref": snap.provider_ref,
        "snapshot_ref": snap.snapshot_ref,
        "created_at": snap.created_at.isoformat() if snap.created_at else None,
    }


def stored_snapshot(job: LifecycleJob) -> SnapshotResult:
    d = job.data
    return SnapshotResult(
        provider=d["provider"], provider_ref=d["provider_ref"], snapshot_ref=d["snapshot_ref"], name=d["name"]
    )


async def raise_snapshot_alert(session: AsyncSession, job: LifecycleJob, error: str, now: datetime) -> uuid.UUID:
    """Seed §9.1: a failed backup (here: the day's VPS snapshot) alerts, through the usual alert events."""
    alert_id = uuid.uuid5(job.id, "snapshot-failed")
    await add_event(
        session,
        outbox,
        AlertRaisedV1(
            alert_id=alert_id,
            tenant_id=job.tenant_id,
            rule=SNAPSHOT_FAILED_RULE,
            severity=AlertSeverity.MEDIUM,
            summary=f"The VPS snapshot of {job.data.get('day')} failed after {job.attempts + 1} attempts: {error}"[
                :2000
            ],
            first_seen=now,
            last_seen=now,
            count=job.attempts + 1,
        ),
        correlation_id=job.tenant_id,
        event_id=uuid.uuid5(alert_id, "raised"),
    )
    return alert_id


async def resolve_snapshot_alerts(session: AsyncSession, tenant_id: uuid.UUID, now: datetime) -> None:
    """A snapshot that succeeds resolves the tenant's open snapshot-failed alerts."""
    rows = (
        await session.execute(
            select(LifecycleJob).where(
                LifecycleJob.tenant_id == tenant_id,
                LifecycleJob.kind == SNAPSHOT,
                LifecycleJob.data["alert_id"].isnot(None),
                LifecycleJob.data["alert_resolved"].is_(None),
            )
        )
    ).scalars()
    for job in rows:
        alert_id = uuid.UUID(job.data["alert_id"])
        await add_event(
            session,
            outbox,
            AlertResolvedV1(
                alert_id=alert_id,
                tenant_id=tenant_id,
                rule=SNAPSHOT_FAILED_RULE,
                resolved_at=now,
                summary="A later VPS snapshot succeeded.",
            ),
            correlation_id=tenant_id,
            event_id=uuid.uuid5(alert_id, "resolved"),
        )
        job.data = {**job.data, "alert_resolved": now.isoformat()}


async def decommission_job_id(session: AsyncSession, tenant_id: uuid.UUID) -> uuid.UUID | None:
    stmt = select(LifecycleJob.id).where(LifecycleJob.key == decommission_key(tenant_id))
    return (await session.execute(stmt)).scalar_one_or_none()
