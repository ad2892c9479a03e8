"""The lifecycle job runner and the snapshot planner, wired from ``letsbe_hub.app.start_workers``.

Safe with several hub replicas: the planner's jobs have unique keys, and the runner leases one job at a time
(``FOR UPDATE SKIP LOCKED`` + ``lease_until``, renewed while the step runs). A runner killed mid-step leaves its
lease to lapse; the next runner resumes the job at its status. Clocks are injectable so tests need not sleep.
Kept small and on its own (a loop, a claim, a step) so it can move onto a shared periodic-worker primitive.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from letsbe_contracts import Provider
from letsbe_contracts.events import DecommissionTask, TenantTaskReportedV1
from letsbe_hub.config import HubSettings
from letsbe_hub.lifecycle import exchange, handlers, recovery, service, state, stream, tools
from letsbe_hub.lifecycle import repository as repo
from letsbe_hub.lifecycle.models import JobStatus as J
from letsbe_hub.lifecycle.models import LifecycleJob
from letsbe_hub.lifecycle.state import DECOMMISSION, MIGRATE, RECOVER, RESTORE, SNAPSHOT, TOOL_CHANGE
from letsbe_hub.providers.base import ServerProvider
from letsbe_hub.providers.errors import ProviderError
from letsbe_hub.providers.factory import build
from letsbe_hub.providers.netcup import NetcupProvider
from letsbe_hub.servers.models import InventoryStatus, Server
from letsbe_platform.db import unit_of_work
from letsbe_platform.logging import get_logger
from letsbe_platform.waiting import Backoff
from letsbe_platform.web import Runtime
from letsbe_platform.workers import Periodic

log = get_logger(__name__)

Clock = Callable[[], datetime]
ACTOR = "lifecycle-worker"


def utcnow() -> datetime:
    return datetime.now(UTC)


def build_providers(settings: HubSettings) -> dict[str, ServerProvider]:
    out: dict[str, ServerProvider] = {}
    for p in (Provider.HETZNER, Provider.NETCUP):
        provider = build(settings, p)
        if provider is not None:
            out[p.value] = provider
    return out


class JobRunner:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: HubSettings,
        providers: Mapping[str, ServerProvider],
        *,
        clock: Clock = utcnow,
        owner: str | None = None,
    ):
        self.sessions = sessions
        self.settings = settings
        self.providers = providers
        self.clock = clock
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease = timedelta(seconds=settings.lifecycle_lease_seconds)

    async def run_once(self) -> bool:
        """Claim one due job and run its current step; False when nothing was due."""
        now = self.clock()
        async with unit_of_work(self.sessions) as s:
            job = await repo.claim(s, self.owner, now, now + self.lease)
        if job is None:
            return False
        log.info("lifecycle job claimed", job_id=str(job.id), kind=job.kind, status=job.status)
        keeper = asyncio.create_task(self._keep_lease(job.id))
        try:
            await self._step(job)
        except service.Wait as wait:
            seconds = wait.seconds if wait.seconds is not None else self.settings.provider_poll_seconds
            await self._release(job, self.clock() + timedelta(seconds=seconds))
            log.info("lifecycle job waits", job_id=str(job.id), why=str(wait))
        except state.IllegalJobTransition as exc:  # our lease lapsed and another worker moved the job on
            log.warning("lifecycle job taken over by another worker", job_id=str(job.id), detail=str(exc))
        except Exception as exc:  # a provider error, or anything unexpected: a failed attempt, retried later
            expected = ProviderError | OSError | recovery.OperationFailed | exchange.TaskFailed
            if not isinstance(exc, expected):
                log.exception("lifecycle step raised", job_id=str(job.id))
            await self._failed_attempt(job, f"{type(exc).__name__}: {exc}"[:2000])
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        return True

    async def _keep_lease(self, job_id: uuid.UUID) -> None:
        while True:
            await asyncio.sleep(self.lease.total_seconds() / 3)
            async with unit_of_work(self.sessions) as s:
                if not await repo.renew(s, job_id, self.owner, self.clock() + self.lease):
                    log.warning("lifecycle job lease lost", job_id=str(job_id))
                    return

    async def _release(self, job: LifecycleJob, due_at: datetime, **kw: object) -> None:
        async with unit_of_work(self.sessions) as s:
            await repo.release(s, job.id, self.owner, due_at=due_at, **kw)  # type: ignore[arg-type]

    async def _failed_attempt(self, job: LifecycleJob, error: str) -> None:
        now = self.clock()
        async with self.sessions() as s:
            job = await repo.get(s, job.id) or job  # its status may have moved on within this step
        attempts = job.attempts + 1
        if attempts < self.settings.lifecycle_max_attempts:
            delay = min(self.settings.lifecycle_retry_seconds * 2 ** (attempts - 1), 3600)
            await self._release(job, now + timedelta(seconds=delay), attempts=attempts, last_error=error)
            log.warning("lifecycle step failed; will retry", job_id=str(job.id), attempts=attempts, error=error)
            return
        async with unit_of_work(self.sessions) as s:
            data = dict(job.data)
            if job.kind == SNAPSHOT:
                data["alert_id"] = str(await service.raise_snapshot_alert(s, job, error, now))
            await state.transition(
                s,
                job.id,
                J.FAILED,
                actor=ACTOR,
                reason=error,
                expected=job.status,
                lease_owner=self.owner,
                attempts=attempts,
                last_error=error,
                data=data,
            )
        log.error("lifecycle job failed", job_id=str(job.id), kind=job.kind, error=error)

    def _provider(self, server: Server | None) -> ServerProvider | None:
        return self.providers.get(server.provider) if server is not None else None

    async def _server(self, job: LifecycleJob) -> Server | None:
        if job.server_id is None:
            return None
        async with self.sessions() as s:
            return await s.get(Server, job.server_id)

    async def _advance(
        self, job: LifecycleJob, to: str, reason: str | None = None, data_update: dict | None = None, **fields: Any
    ) -> LifecycleJob:
        async with unit_of_work(self.sessions) as s:
            if data_update is not None or job.kind in (RESTORE, RECOVER, MIGRATE):
                return await self._advance_in(s, job, to, reason or "", data_update, **fields)
            return await state.transition(
                s,
                job.id,
                to,
                actor=ACTOR,
                reason=reason,
                expected=job.status,
                lease_owner=self.owner,
                attempts=0,
                **fields,
            )

    async def _reload(self, job: LifecycleJob) -> LifecycleJob:
        async with self.sessions() as s:
            return await repo.get(s, job.id) or job

    async def _step(self, job: LifecycleJob) -> None:
        if job.kind == DECOMMISSION:
            await self._decommission(job)
        elif job.kind == TOOL_CHANGE:
            await tools.step(self, job)
        elif job.kind == SNAPSHOT:
            if job.status == J.SCHEDULED:
                job = await self._advance(job, J.CREATING, "the snapshot came due")
            server = await self._server(job)
            if server is not None and server.status not in (InventoryStatus.IN_USE, InventoryStatus.RESERVED):
                await self._advance(job, J.CANCELLED, f"the server is {server.status}: nothing to snapshot")
                return
            provider = self._provider(server)
            if server is None or provider is None:
                raise RuntimeError("the tenant's server or its provider is not available")
            snap = await service.take_snapshot(server, provider, job.data["name"])
            async with unit_of_work(self.sessions) as s:
                await state.transition(
                    s,
                    job.id,
                    J.SUCCEEDED,
                    actor=ACTOR,
                    reason=f"{server.provider} snapshot {snap.snapshot_ref}",
                    expected=J.CREATING,
                    lease_owner=self.owner,
                    data=service.snapshot_data(job, snap),
                )
                await service.resolve_snapshot_alerts(s, job.tenant_id, self.clock())
            log.info("snapshot taken", tenant_id=str(job.tenant_id), snapshot=snap.snapshot_ref)
            await self.prune(job.tenant_id)

        elif job.kind in (RESTORE, RECOVER, MIGRATE):
            # Step by step until a step waits, or the next one is due later (the migration's rollback window).
            while job.finished_at is None and job.status != J.FAILED and job.due_at <= self.clock():
                job = await self._recovery_step(job)

    # --- restore, recovery, migration (letsbe_hub.lifecycle.recovery) ---------------------------------------------

    async def _operation(self, job: LifecycleJob, kind: str, server_id: str | uuid.UUID, **args: object) -> dict:
        """The report of the job's server operation once it SUCCEEDED; until then Wait, or a failed attempt."""
        return await exchange.outcome(self, job, kind, lambda s: recovery.operation(s, job, kind, server_id, **args))

    async def _recovery_step(self, job: LifecycleJob) -> LifecycleJob:
        """Run the job's current step; returns the job in its next state (or raises Wait / a failed attempt)."""
        st, data = job.status, job.data
        target = data.get("target_server_id")
        if st == J.ALLOCATING:
            async with unit_of_work(self.sessions) as s:
                fresh = await repo.get(s, job.id)
                assert fresh is not None
                server = await recovery.claim_pool_server(s, fresh, self.clock())
                reason = f"{server.provider} server {server.name} ({server.ipv4}) reserved"
                return await state.transition(
                    s, job.id, J.PROVISIONING, actor=ACTOR, reason=reason, expected=st, lease_owner=self.owner,
                    attempts=0,
                )  # fmt: skip
        if st == J.PROVISIONING:
            await self._operation(job, "provision", target)
            return await self._advance(job, J.RESTORING if job.kind == RECOVER else J.BACKING_UP, "provisioned")
        if st == J.BACKING_UP:  # migration: the source's tools stop here (downtime starts) and stay stopped
            op = await self._operation(job, "backup", job.server_id or "", stop_tools=True)
            backup_set = op.get("detail") or "latest"
            stopped = op.get("started_at") or op.get("requested_at")
            return await self._advance(
                job, J.RESTORING, f"tools stopped, consistent backup {backup_set} taken",
                data_update={"backup_set": backup_set, "tools_stopped_at": stopped},
            )  # fmt: skip
        if st == J.RESTORING:
            args = {"backup_set": data.get("backup_set") or "latest"}
            if data.get("tool"):
                args["tool"] = data["tool"]
            op = await self._operation(job, "restore", target, **args)
            what = f"{data.get('tool') or 'every tool'} restored from {op.get('detail') or args['backup_set']}"
            nxt = {RESTORE: J.SUCCEEDED, RECOVER: J.SWITCHING_DNS, MIGRATE: J.VERIFYING}[job.kind]
            return await self._advance(job, nxt, what)
        if st == J.VERIFYING:
            await self._operation(job, "verify", target)
            return await self._advance(job, J.SWITCHING_DNS, "every tool answers on the new server")
        if st == J.SWITCHING_DNS:
            op = await self._operation(job, "switch-dns", target)
            now = self.clock()
            switched = op.get("finished_at") or now.isoformat()
            downtime = recovery.duration(data.get("tools_stopped_at"), switched)
            async with unit_of_work(self.sessions) as s:
                server = await s.get(Server, uuid.UUID(target))
                assert server is not None
                await recovery.move_tenant(s, job, server, now)
                extra: dict[str, object] = {"dns_switched_at": switched}
                reason = f"DNS points at {server.ipv4}"
                if job.kind == MIGRATE:
                    extra["downtime_seconds"] = downtime
                    reason += f"; downtime {downtime}s (tools stopped to DNS switched)"
                    window = timedelta(hours=self.settings.migration_rollback_window_hours)
                    return await self._advance_in(s, job, J.ROLLBACK_WINDOW, reason, extra, due_at=now + window)
                return await self._advance_in(s, job, J.RELEASING_OLD, reason, extra)
        if st == J.ROLLBACK_WINDOW:
            return await self._advance(job, J.RELEASING_OLD, "the rollback window ended")
        if st == J.RELEASING_OLD:
            server = await self._server(job)
            outcome, server_status = await service.release_server(server, self._provider(server))
            now = self.clock()
            took = recovery.duration(job.created_at.isoformat(), now.isoformat())
            async with unit_of_work(self.sessions) as s:
                data = {**job.data, "old_server_outcome": outcome, "duration_seconds": took}
                await service.finish_release(
                    s, job, self.owner, f"{outcome}; {job.kind} took {took}s", server_status, now,
                    expected=J.RELEASING_OLD, data=data,
                )  # fmt: skip
                fresh = await repo.get(s, job.id)
            assert fresh is not None
            return fresh
        raise RuntimeError(f"a {job.kind} job has no step for {st}")

    async def _advance_in(
        self,
        s: AsyncSession,
        job: LifecycleJob,
        to: str,
        reason: str,
        data_update: dict | None = None,
        **fields: object,
    ) -> LifecycleJob:
        fresh = await repo.get(s, job.id)
        assert fresh is not None
        data = {**fresh.data, **(data_update or {})}
        if to == J.SUCCEEDED and job.kind != DECOMMISSION:
            data["duration_seconds"] = recovery.duration(job.created_at.isoformat(), self.clock().isoformat())
            reason += f" in {data['duration_seconds']}s"
        return await state.transition(
            s, job.id, to, actor=ACTOR, reason=reason, expected=job.status, lease_owner=self.owner, attempts=0,
            data=data, **fields,
        )  # fmt: skip

    async def _decommission(self, job: LifecycleJob) -> None:
        """One step of a decommission: each state's work, then the next state, until the job waits or is done."""
        server = await self._server(job)
        while True:
            if job.status in service.SERVER_TASKS:
                job = await self._server_task(job)
            elif job.status == J.EXPORT_WINDOW:
                if job.due_at > self.clock():  # just entered: the lease goes back until the window ends
                    await self._release(job, job.due_at)
                    return
                netcup = server is not None and server.provider == Provider.NETCUP.value
                to = J.REINSTALLING if netcup else J.RELEASING_SERVER
                job = await self._advance(job, to, "the export window ended")
            elif job.status == J.RELEASING_SERVER:
                outcome, server_status = await service.release_server(server, self._provider(server))
                async with unit_of_work(self.sessions) as s:
                    await service.finish_release(s, job, self.owner, outcome, server_status, self.clock())
                log.info("tenant server released", tenant_id=str(job.tenant_id), outcome=outcome)
                return
            elif job.status == J.REINSTALLING:
                job = await self._reinstall(job, server)
            elif job.status == J.PREFLIGHT:
                await self._preflight(job, server)
                return
            else:
                return

    async def _server_task(self, job: LifecycleJob) -> LifecycleJob:
        """The state's server task (the provisioner's), once reported done; then the next state."""
        task = service.SERVER_TASKS[job.status]

        async def ask(_: AsyncSession) -> DecommissionTask:
            return DecommissionTask(kind=task)  # type: ignore[arg-type]

        entry = await exchange.outcome(self, job, task, ask)
        if task == "final-backup":
            result = entry.get("result") or {}
            reason = (
                f"final backup taken at {result.get('last_run', '?')} (off-site: "
                + str((result.get("remote_sync") or {}).get("status", "?"))
                + ")"
            )
            return await self._advance(job, J.STOPPING_AGENTS, reason)
        until = datetime.fromisoformat(job.data["export_until"])
        reason = f"agents stopped; the data is kept until {until.isoformat()}"
        return await self._advance(job, J.EXPORT_WINDOW, reason, due_at=until)

    async def _reinstall(self, job: LifecycleJob, server: Server | None) -> LifecycleJob:
        provider = self._provider(server)
        if server is None or not isinstance(provider, NetcupProvider):
            raise RuntimeError("the pool server or the netcup provider is not available")

        async def mark() -> None:
            async with unit_of_work(self.sessions) as s:
                await service.start_reinstall(s, job, self.owner, self.clock())

        task = await service.reinstall(
            job,
            server,
            provider,
            image=self.settings.netcup_reinstall_image,
            ssh_key_ids=self.settings.netcup_ssh_key_ids,
            mark=mark,
        )
        job = await self._reload(job)
        log.info("pool server reinstalled", server_id=str(server.id), task=task)
        return await self._advance(
            job,
            J.PREFLIGHT,
            f"netcup server {server.provider_ref} wiped and reinstalled ({self.settings.netcup_reinstall_image})",
            data={**job.data, "reinstall": {**(job.data.get("reinstall") or {}), "task": task}},
        )

    async def _preflight(self, job: LifecycleJob, server: Server | None) -> None:
        provider = self._provider(server)
        if server is None or provider is None:
            raise RuntimeError("the pool server or its provider is not available")
        fingerprint = await service.preflight(
            server,
            provider,
            timeout=self.settings.ssh_ready_timeout_seconds,
            backoff=Backoff(self.settings.provider_poll_first_seconds, self.settings.ssh_probe_seconds),
        )
        async with unit_of_work(self.sessions) as s:
            await service.return_to_pool(s, job, self.owner, fingerprint, self.clock())
        log.info("pool server back in the pool", server_id=str(server.id), fingerprint=fingerprint)

    async def prune(self, tenant_id: uuid.UUID) -> int:
        """Delete the tenant's snapshots beyond the newest ``snapshots_keep`` (only after a new one succeeded)."""
        async with self.sessions() as s:
            old = await repo.snapshots_beyond(s, tenant_id, self.settings.snapshots_keep)
        for job in old:
            snap = service.stored_snapshot(job)
            provider = self.providers.get(snap.provider)
            if provider is None:
                continue
            await provider.delete_snapshot(snap)  # gone already is fine: a crash here is simply done again
            async with unit_of_work(self.sessions) as s:
                await state.transition(
                    s, job.id, J.PRUNED, actor=ACTOR, reason="three newer snapshots exist", expected=J.SUCCEEDED
                )
        return len(old)


def start(rt: Runtime, settings: HubSettings, *, clock: Clock = utcnow) -> JobRunner:
    """Jobs: any number of replicas, each claims a due job with ``FOR UPDATE SKIP LOCKED`` and a lease row (idempotent
    by construction). The snapshot planner: idempotent by construction too (one job per tenant and day, by key)."""
    sessions = rt.sessions
    runner = JobRunner(sessions, settings, build_providers(settings), clock=clock)
    jobs = Periodic("lifecycle-jobs", runner.run_once, settings.lifecycle_poll_seconds)

    async def run_jobs() -> None:
        try:
            await jobs.run()
        finally:
            for p in runner.providers.values():
                await p.aclose()

    rt.start("lifecycle-jobs", run_jobs(), jobs.stop)
    if rt.has_bus:
        reports = handlers.ReportHandlers(sessions)
        rt.consume(handlers.ON_TASK_REPORTED, TenantTaskReportedV1, reports.on_task_reported)
    stream.start_listener(rt)
    if settings.snapshots_enabled:

        async def plan() -> None:
            async with unit_of_work(sessions) as s:
                await service.plan_snapshots(s, clock())

        rt.every("snapshot-planner", settings.snapshot_schedule_seconds, plan)
    if settings.migrations_auto:

        async def migrate() -> None:
            async with unit_of_work(sessions) as s:
                await recovery.start_proposed_migrations(s, clock())

        rt.every("migration-policy", settings.snapshot_schedule_seconds, migrate)
    return runner


async def main() -> None:  # pragma: no cover - run by the crash tests as a separate process
    """``python -m letsbe_hub.lifecycle``: run jobs until stopped (a worker process of its own)."""
    from letsbe_platform.db import make_engine, make_session_factory

    settings = HubSettings()
    engine = make_engine(settings.database_url or "")
    sessions = make_session_factory(engine)
    runner = JobRunner(sessions, settings, build_providers(settings))
    try:
        await Periodic("lifecycle-jobs", runner.run_once, settings.lifecycle_poll_seconds).run()
    finally:
        await engine.dispose()
