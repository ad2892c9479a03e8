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

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from letsbe_contracts import Provider
from letsbe_contracts.events import TenantToolChangeReportedV1
from letsbe_hub.config import HubSettings
from letsbe_hub.lifecycle import repository as repo
from letsbe_hub.lifecycle import service, state, stream, tools
from letsbe_hub.lifecycle.handlers import ON_TOOL_CHANGE_REPORTED, tool_change_report_handler
from letsbe_hub.lifecycle.models import LifecycleJob
from letsbe_hub.lifecycle.state import DECOMMISSION, FAILED, SNAPSHOT, SUCCEEDED, TOOL_CHANGE
from letsbe_hub.providers.base import ServerProvider
from letsbe_hub.providers.errors import ProviderError
from letsbe_hub.providers.factory import build
from letsbe_hub.servers.models import Server
from letsbe_platform.db import unit_of_work
from letsbe_platform.logging import get_logger
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
            poll = timedelta(seconds=self.settings.provider_poll_seconds)
            await self._release(job, wait.until or self.clock() + poll)
            log.info("lifecycle job waits", job_id=str(job.id), why=str(wait))
        except state.IllegalJobTransition as exc:  # our lease lapsed and another worker moved the job on
            log.warning("lifecycle job taken over by another worker", job_id=str(job.id), detail=str(exc))
        except Exception as exc:  # a provider error, or anything unexpected: a failed attempt, retried later
            if not isinstance(exc, ProviderError | OSError | tools.PhaseFailed):
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
                FAILED,
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

    async def _advance(self, job: LifecycleJob, to: str, reason: str | None = None) -> LifecycleJob:
        async with unit_of_work(self.sessions) as s:
            return await state.transition(
                s, job.id, to, actor=ACTOR, reason=reason, expected=job.status, lease_owner=self.owner, attempts=0
            )

    async def _step(self, job: LifecycleJob) -> None:
        if job.kind == DECOMMISSION:
            if job.status == "EXPORT_WINDOW":
                job = await self._advance(job, "RELEASING_SERVER", "the export window ended")
            server = await self._server(job)
            outcome, server_status = await service.release_server(server, self._provider(server))
            async with unit_of_work(self.sessions) as s:
                await service.finish_release(s, job, self.owner, outcome, server_status, self.clock())
            log.info("tenant server released", tenant_id=str(job.tenant_id), outcome=outcome)
        elif job.kind == TOOL_CHANGE:
            await tools.step(self, job)
        elif job.kind == SNAPSHOT:
            if job.status == "SCHEDULED":
                job = await self._advance(job, "CREATING", "the snapshot came due")
            server = await self._server(job)
            if server is not None and server.status not in ("IN_USE", "RESERVED"):
                await self._advance(job, state.CANCELLED, f"the server is {server.status}: nothing to snapshot")
                return
            provider = self._provider(server)
            if server is None or provider is None:
                raise RuntimeError("the tenant's server or its provider is not available")
            snap = await service.take_snapshot(server, provider, job.data["name"])
            async with unit_of_work(self.sessions) as s:
                await state.transition(
                    s,
                    job.id,
                    SUCCEEDED,
                    actor=ACTOR,
                    reason=f"{server.provider} snapshot {snap.snapshot_ref}",
                    expected="CREATING",
                    lease_owner=self.owner,
                    data=service.snapshot_data(job, snap),
                )
                await service.resolve_snapshot_alerts(s, job.tenant_id, self.clock())
            log.info("snapshot taken", tenant_id=str(job.tenant_id), snapshot=snap.snapshot_ref)
            await self.prune(job.tenant_id)

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
                    s, job.id, "PRUNED", actor=ACTOR, reason="three newer snapshots exist", expected=SUCCEEDED
                )
        return len(old)


def start(rt: Runtime, settings: HubSettings, *, clock: Clock = utcnow) -> JobRunner:
    """Jobs: any number of replicas, each claims a due job with ``FOR UPDATE SKIP LOCKED`` and a lease row (idempotent
    by construction). The snapshot planner: idempotent by construction too (one job per tenant and day, by key)."""
    assert rt.sessions is not None
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
    if rt.bus is not None:
        reports = rt.bus.consumer(
            ON_TOOL_CHANGE_REPORTED, TenantToolChangeReportedV1, tool_change_report_handler(sessions)
        )
        rt.start(ON_TOOL_CHANGE_REPORTED, reports.run(), reports.stop)
    if settings.database_url:
        stream.start_listener(rt, settings.database_url)
    if settings.snapshots_enabled:

        async def plan() -> None:
            async with unit_of_work(sessions) as s:
                await service.plan_snapshots(s, clock())

        rt.every("snapshot-planner", settings.snapshot_schedule_seconds, plan)
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
