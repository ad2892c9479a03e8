"""The pipeline: one job per order, ten steps over SSH, resumable, streamed live, finished once.

State lives in the job and step rows; every event leaves through the outbox in the same transaction as the row
change it reports. Why the outbox for log lines too: one ordered stream per job (the outbox sequence follows the
order we commit in, and one job has one writer at a time, see the lease), nothing the Hub shows that we did not
commit (a step reported SUCCEEDED is SUCCEEDED in our rows), and no lost step change after a crash. Lines are
batched (``log_flush_seconds``) so a chatty step costs a few transactions a second, not one per line; each
batch reserves its ``seq`` numbers from the job row in the same transaction, so a seq is never reused, even
across crashes (gaps are fine; consumers order and de-duplicate by seq, and each event id is uuid5(job, seq)).

Who runs a job: the process holding its lease (``lease_owner``/``lease_until``, renewed while it works). A
redelivered dns-ready for a job whose owner died (the lease ran out) resumes it at the first unfinished step;
one for a FAILED job resumes at the failed step; one for a SUCCEEDED job changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

import asyncssh
from prometheus_client import Counter, Histogram
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from letsbe_contracts import (
    AgentKind,
    DnsReadyV1,
    FailureStage,
    OrderFailedV1,
    OrderSpec,
    ProvisionedV1,
    ProvisioningLogV1,
    ProvisioningStepV1,
    ServerTarget,
    StepStatus,
    load_catalog,
)
from letsbe_contracts.events import MailReadyV1, TenantAgentRegisteredV1
from letsbe_platform import state
from letsbe_platform.bus import Delivery
from letsbe_platform.db import unit_of_work
from letsbe_platform.logging import get_logger
from letsbe_platform.metrics import LATENCY_BUCKETS
from letsbe_platform.outbox import add_event, stage
from letsbe_platform.waiting import Backoff, Wakeups, poll_until
from letsbe_provisioner.config import ProvisionerSettings
from letsbe_provisioner.db import outbox
from letsbe_provisioner.jobs import ssh
from letsbe_provisioner.jobs.hub import HubClient, HubError
from letsbe_provisioner.jobs.models import JOB, STEP, Job, JobStatus, JobStep
from letsbe_provisioner.jobs.redact import Redactor
from letsbe_provisioner.jobs.secrets import SecretBox, ensure_secrets
from letsbe_provisioner.rendering.plan import AGENTS, Plan, Settings
from letsbe_provisioner.steps import STEPS

log = get_logger(__name__)

Claim = Literal["mine", "busy", "done"]  # what claiming leased work found (see run_claimed)
K = TypeVar("K")

JOBS_FINISHED = Counter("provisioner_jobs_finished_total", "Provisioning jobs that ended", ["outcome"])
for _outcome in ("provisioned", "failed"):  # at 0 from start-up: an alert rule's increase() sees the first one
    JOBS_FINISHED.labels(_outcome)
STEP_SECONDS = Histogram(
    "provisioner_step_duration_seconds",
    "Wall time of one step attempt",
    ["step", "outcome"],
    buckets=(*LATENCY_BUCKETS, 30.0, 60.0, 300.0, 900.0),
)
STEP_RETRIES = Counter("provisioner_step_retries_total", "Step attempts retried after a transient fault", ["step"])

# Output that means "try again later", not "this server is broken".
TRANSIENT_OUTPUT = re.compile(
    r"Could not get lock|Unable to acquire the dpkg frontend lock|Temporary failure resolving|"
    r"Connection timed out|Connection reset by peer|TLS handshake timeout|i/o timeout|Failed to fetch|"
    r"Hash Sum mismatch|toomanyrequests|503 Service Unavailable|another provisioning step still holds",
    re.I,
)
EX_TEMPFAIL = 75
TAIL_LINES = 50
REASON_LINES = 20

NS = uuid.UUID("6f1d2a4e-2b8c-4f4e-9a53-7c0e4b1f6a10")


def event_id(job_id: uuid.UUID, key: str) -> uuid.UUID:
    """Deterministic: staging the same fact twice (a crash and a redo) stages it once."""
    return uuid.uuid5(NS, f"{job_id}:{key}")


def _now() -> datetime:
    return datetime.now(UTC)


async def run_claimed(
    claim: Callable[[], Awaitable[tuple[Claim, K]]],
    run: Callable[[K], Coroutine[Any, Any, None]],
    running: dict[K, asyncio.Task[None]],
    keepalive: Coroutine[Any, Any, None],
    busy_seconds: float,
    *,
    name: str,
) -> None:
    """The one loop of a message that starts leased work: ``claim`` it (done: nothing left; busy: another process
    holds the lease, claim again after ``busy_seconds``; mine: run it), run it as a task of this process (a
    redelivery while it runs waits on the same task) and keep the message in progress meanwhile. On shutdown only
    the call that started the task stops it: the lease is released and the next process resumes the work."""
    keeping = asyncio.create_task(keepalive)
    try:
        while True:
            decision, key = await claim()
            if decision == "done":
                return
            if decision == "busy":
                await asyncio.sleep(busy_seconds)
                continue
            task = running.get(key)
            owner = task is None
            if task is None:
                task = asyncio.create_task(run(key), name=f"{name}-{key}")
                running[key] = task
                task.add_done_callback(lambda _t, k=key: running.pop(k, None))
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if owner:
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await asyncio.wait_for(task, 5)
                raise
            return
    finally:
        keeping.cancel()


class Pipeline:
    """Runs dns-ready events into provisioned (or order-failed). One instance per process."""

    def __init__(
        self,
        settings: ProvisionerSettings,
        sessions: async_sessionmaker[AsyncSession],
        hub: HubClient,
        box: SecretBox,
        client_key: asyncssh.SSHKey,
    ):
        self.settings = settings
        self.sessions = sessions
        self.hub = hub
        self.box = box
        self.client_key = client_key
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.running: dict[uuid.UUID, asyncio.Task[None]] = {}
        self.registrations = Wakeups()  # by tenant id: the jobs waiting for their Safety Wrapper to register
        self.registered: set[uuid.UUID] = set()  # tenants of those jobs whose Safety Wrapper's registration we heard
        self.static_secrets = [s.get_secret_value() for s in (settings.hub_token,) if s is not None]
        self.unreleased: set[uuid.UUID] = set()  # jobs whose run ended without releasing its lease

    # --- entry point ----------------------------------------------------------------------------------------------

    def on_agent_registered(self, event: TenantAgentRegisteredV1) -> None:
        """A notification (core NATS, may be lost): the job waiting for this tenant checks again now. The hub sends
        it after committing the registration, so for the Safety Wrapper it is the answer itself (no hub call)."""
        if event.agent == AgentKind.SAFETY_WRAPPER and self.registrations.waiting(event.tenant_id):
            self.registered.add(event.tenant_id)
        self.registrations.notify(event.tenant_id)

    async def on_dns_ready(self, event: DnsReadyV1, delivery: Delivery | None = None) -> None:
        # Another live process runs it: hold the message until it ends or dies.
        busy = min(self.settings.lease_seconds / 2, 5.0)
        await run_claimed(
            lambda: self._claim(event), self._run, self.running, self._keep_in_progress(delivery), busy, name="job"
        )

    async def _keep_in_progress(self, delivery: Delivery | None) -> None:
        if delivery is None:
            return
        while True:
            await asyncio.sleep(self.settings.ack_wait_seconds / 3)
            with contextlib.suppress(Exception):
                await delivery.in_progress()

    async def _claim(self, event: DnsReadyV1) -> tuple[Claim, uuid.UUID]:
        """Create the job, resume a failed one, or take over one whose owner died; in one transaction."""
        order = event.order
        async with unit_of_work(self.sessions) as session:
            job = (
                await session.execute(select(Job).where(Job.order_id == order.order_id).with_for_update())
            ).scalar_one_or_none()
            lease = _now() + timedelta(seconds=self.settings.lease_seconds)
            if job is None:
                unknown = load_catalog().unknown(order.tools)
                job = Job(
                    id=uuid.uuid4(),
                    order_id=order.order_id,
                    tenant_id=order.order_id,
                    domain=order.domain,
                    status=JobStatus.RUNNING,
                    run=1,
                    spec=event.model_dump(mode="json"),
                    log_seq=0,
                    lease_owner=self.owner,
                    lease_until=lease,
                )
                session.add(job)
                for s in STEPS:
                    session.add(
                        JobStep(job_id=job.id, number=s.number, name=s.name, status=StepStatus.PENDING, attempt=0)
                    )
                if unknown:  # the Hub validates orders; this is a safety net, not a retry case
                    await session.flush()
                    await self._fail_job(
                        session, job, 1, f"unknown tools in the order: {', '.join(unknown)}", retryable=False
                    )
                    return "done", job.id
                await ensure_secrets(session, self.box, job.tenant_id, order.tools)
                log.info("provisioning job created", order_id=str(order.order_id), job_id=str(job.id))
                return "mine", job.id
            if job.status == JobStatus.SUCCEEDED and self._same_server(job, event):
                return "done", job.id
            if job.status == JobStatus.SUCCEEDED:
                # The tenant moves to another server (a lost server's recovery, a migration): all ten steps run
                # there, with the tenant's stored secrets.
                steps = (await session.execute(select(JobStep).where(JobStep.job_id == job.id))).scalars().all()
                for step in (s for s in steps if s.status != StepStatus.PENDING):
                    await state.move(
                        session, STEP, step, StepStatus.PENDING, actor=self.owner, exit_code=None, error=None
                    )
                moved = {"run": job.run + 1, "error": None, "failed_step": None, "spec": event.model_dump(mode="json")}
                lease_to_me = {
                    "lease_owner": self.owner,
                    "lease_until": lease,
                    "finished_at": None,
                    "steps_done_at": None,
                }
                await state.move(session, JOB, job, JobStatus.RUNNING, actor=self.owner, **moved, **lease_to_me)
                await ensure_secrets(session, self.box, job.tenant_id, order.tools)
                log.info("provisioning the tenant on another server", job_id=str(job.id), server=str(event.server.ipv4))
                return "mine", job.id
            if job.status == JobStatus.FAILED:
                # A retry (or a redelivery) of dns-ready: resume at the failed step, with the target it carries now.
                failed = await session.get(JobStep, (job.id, job.failed_step or 1))
                if failed is not None and failed.status == StepStatus.FAILED:
                    await state.move(session, STEP, failed, StepStatus.PENDING, actor=self.owner)
                resumed = {"run": job.run + 1, "error": None, "failed_step": None, "finished_at": None}
                lease_to_me = {"lease_owner": self.owner, "lease_until": lease}
                spec = event.model_dump(mode="json")
                await state.move(
                    session, JOB, job, JobStatus.RUNNING, actor=self.owner, spec=spec, **resumed, **lease_to_me
                )
                await ensure_secrets(session, self.box, job.tenant_id, order.tools)
                log.info(
                    "resuming failed provisioning job", order_id=str(order.order_id), job_id=str(job.id), run=job.run
                )
                return "mine", job.id
            if job.id in self.running:
                return "mine", job.id  # a redelivery while we are at it: wait with it
            # Our own run of it ended while the database was down (lease not released): resume it now rather than
            # wait for our own lease to run out.
            if job.id in self.unreleased or job.lease_until is None or job.lease_until < _now():
                self.unreleased.discard(job.id)
                log.warning("taking over provisioning job", job_id=str(job.id), previous_owner=job.lease_owner)
                job.lease_owner, job.lease_until = self.owner, lease
                return "mine", job.id
            return "busy", job.id

    @staticmethod
    def _same_server(job: Job, event: DnsReadyV1) -> bool:
        return DnsReadyV1.model_validate(job.spec).server.server_id == event.server.server_id

    # --- one run of a job -----------------------------------------------------------------------------------------

    async def _run(self, job_id: uuid.UUID) -> None:
        async with unit_of_work(self.sessions) as session:
            job = await session.get(Job, job_id)
            assert job is not None
            steps = list(
                (
                    await session.execute(select(JobStep).where(JobStep.job_id == job_id).order_by(JobStep.number))
                ).scalars()
            )
            spec = DnsReadyV1.model_validate(job.spec)
            secrets = await ensure_secrets(session, self.box, job.tenant_id, spec.order.tools)
        run = JobRun(self, job, steps, spec.order, spec.server, secrets)
        renew = asyncio.create_task(self._renew_lease(job_id))
        try:
            await run.execute()
        finally:
            renew.cancel()
            await run.finish()
            try:
                async with unit_of_work(self.sessions) as session:
                    await session.execute(
                        update(Job).where(Job.id == job_id, Job.lease_owner == self.owner).values(lease_until=None)
                    )
            except Exception:
                self.unreleased.add(job_id)

    async def _renew_lease(self, job_id: uuid.UUID) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_seconds / 3)
            try:
                async with unit_of_work(self.sessions) as session:
                    await session.execute(
                        update(Job)
                        .where(Job.id == job_id, Job.lease_owner == self.owner)
                        .values(lease_until=_now() + timedelta(seconds=self.settings.lease_seconds))
                    )
            except Exception as exc:  # the next renewal may work; losing the lease only allows a takeover
                log.warning("lease renewal failed", job_id=str(job_id), error=repr(exc))

    async def _fail_job(self, session: AsyncSession, job: Job, step: int, reason: str, *, retryable: bool) -> None:
        failed = {"error": reason, "failed_step": step, "finished_at": _now()}
        await state.move(session, JOB, job, JobStatus.FAILED, actor=self.owner, **failed)
        await add_event(
            session,
            outbox,
            OrderFailedV1(
                order_id=job.order_id,
                stage=FailureStage.PROVISIONING,
                reason=reason[:4000],
                retryable=retryable,
                step=step,
            ),
            correlation_id=str(job.order_id),
            event_id=event_id(job.id, f"failed:{job.run}"),
        )
        JOBS_FINISHED.labels("failed").inc()
        log.error("provisioning failed", order_id=str(job.order_id), job_id=str(job.id), step=step, retryable=retryable)


def plan_settings(settings: ProvisionerSettings, server: ServerTarget, client_key: asyncssh.SSHKey) -> dict[str, Any]:
    """The rendering settings that come from the provisioner's settings and the server (beyond URLs and paths)."""
    as_root = server.ssh_user == "root"
    return {
        # A server handed over as root gets the provisioning user (step 3), with our key, for every later step.
        "ssh_user": settings.provisioning_user if as_root else server.ssh_user,
        "ssh_user_key": client_key.export_public_key().decode().strip() if as_root else None,
        "ssh_port": server.ssh_port,
        "preflight_min_cpus": settings.preflight_min_cpus,
        "agent_heartbeat_seconds": settings.agent_heartbeat_seconds,
        "agent_backoff_max_seconds": settings.agent_backoff_max_seconds,
        "fail2ban_ignoreip": settings.control_plane_ips,
        "docker_source": settings.docker_source,
        "registry_mirror": settings.registry_mirror,
        "image_registry": settings.image_registry,
        "insecure_registries": settings.insecure_registries,
        "swap_mb": settings.swap_mb,
        "vm_sysctls": settings.vm_sysctls,
        "apps_setup": settings.apps_setup,
        "llm_base_url": settings.llm_base_url,
    }


def build_plan(
    settings: ProvisionerSettings,
    client_key: asyncssh.SSHKey,
    order: OrderSpec,
    server: ServerTarget,
    secrets: dict[str, str],
) -> Plan:
    """The tenant's rendering, as every step (and a key rotation) renders it."""
    return Plan(
        order,
        Settings(
            hub_url=settings.tenant_hub_url or settings.hub_url,
            acme_url=settings.acme_url,
            acme_directory_url=settings.acme_directory_url,
            acme_ca_pem=settings.acme_ca_pem(),
            root=settings.root_for(server.ipv4),
            agent_image_tag=settings.agent_image_tag,
            **plan_settings(settings, server, client_key),
        ),
        secrets,
    )


class JobRun:
    """The steps of one job, in order, by this process; holds the SSH connection and the redactor."""

    def __init__(
        self,
        pipeline: Pipeline,
        job: Job,
        steps: list[JobStep],
        order: OrderSpec,
        server: ServerTarget,
        secrets: dict[str, str],
    ):
        self.p = pipeline
        self.settings = pipeline.settings
        self.job_id = job.id
        self.order_id = job.order_id
        self.tenant_id = job.tenant_id
        self.steps = steps
        self.order = order
        self.server = server
        self.redact = Redactor([*secrets.values(), *pipeline.static_secrets])
        self.plan = build_plan(self.settings, pipeline.client_key, order, server, secrets)
        self.conn: asyncssh.SSHClientConnection | None = None
        self.conn_user: str | None = None
        # The next connection's handshake, started before the commits that precede its step (see _connect_ahead).
        self.connecting: tuple[str, asyncio.Task[asyncssh.SSHClientConnection]] | None = None
        # Hub answers a step needs, asked for while the step before it runs (see _ask_ahead).
        self.ahead: dict[int, asyncio.Task[Any]] = {}
        # (step, attempt) of the next step, moved to RUNNING in the commit that ended the step before it.
        self.begun: tuple[int, int] | None = None

    async def close(self) -> None:
        if self.connecting is not None:
            _, task = self.connecting
            self.connecting = None
            task.cancel()
            with contextlib.suppress(BaseException):
                conn = await task
                conn.close()
        if self.conn is not None:
            self.conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.conn.wait_closed(), 5)
            self.conn = None

    async def finish(self) -> None:
        """Close the connection; drop the answers asked for ahead that no step used."""
        for task in self.ahead.values():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        self.ahead.clear()
        await self.close()

    async def execute(self) -> None:
        for step in self.steps:
            if step.status == StepStatus.SUCCEEDED:
                continue  # finished before a crash or a failure: never run again
            if not await self._step(step):
                return
        await self._finish()

    # --- a step ---------------------------------------------------------------------------------------------------

    async def _step(self, step: JobStep) -> bool:
        attempts = self.settings.step_attempts
        backoff = self.settings.retry_backoff_seconds or (1.0,)
        for i in range(attempts):
            self._connect_ahead(step.number)
            self._ask_ahead(step.number + 1)
            if self.begun is not None and self.begun[0] == step.number:
                attempt, self.begun = self.begun[1], None
            else:
                attempt = await self._mark_running(step)
            sink = LogSink(self, step.number)
            started = time.perf_counter()
            transient, exit_code, error = False, None, ""
            try:
                tokens, llm_key = await self._issued() if step.number == 10 else (None, None)
                if step.number == 8:
                    await self._offsite()
                script = self.plan.step_script(step.number, tokens, llm_key)
                target = ssh.step_target(self.server, step.number, self.plan.settings.ssh_user)
                exit_code = await ssh.run_script(
                    await self._connection(step.number),
                    script,
                    root=self.plan.settings.root,
                    user=target.ssh_user,
                    on_line=sink.add,
                    timeout=self.settings.step_timeout_seconds,
                )
                if exit_code == 0:
                    following = self._following(step)
                    if following is not None:
                        self._connect_ahead(following.number)
                        self._ask_ahead(following.number + 1)
                    await self._mark_done(step, sink, attempt, following)
                    STEP_SECONDS.labels(step.name, "ok").observe(time.perf_counter() - started)
                    return True
                transient = exit_code == EX_TEMPFAIL or any(TRANSIENT_OUTPUT.search(line) for line in sink.tail)
                error = f"exit code {exit_code}: {sink.reason()}"
            except ssh.HostKeyMismatch as exc:
                await sink.close()
                await self._mark_failed(step, sink, attempt, None, str(exc), retryable=False)
                return False
            except (ssh.ConnectionFailed, TimeoutError) as exc:
                transient = True
                error = str(exc) or f"the step ran longer than {self.settings.step_timeout_seconds:g}s"
                await self.close()
            except HubError as exc:
                transient, error = exc.transient, str(exc)
            finally:
                await sink.close()
            STEP_SECONDS.labels(step.name, "failed").observe(time.perf_counter() - started)
            error = self.redact(error)
            if not transient or i == attempts - 1:
                await self._mark_failed(step, sink, attempt, exit_code, error, retryable=True)
                return False
            delay = backoff[min(i, len(backoff) - 1)]
            STEP_RETRIES.labels(step.name).inc()
            await sink.note(f"attempt {attempt} failed ({error.splitlines()[0][:300]}); retrying in {delay:g}s")
            await asyncio.sleep(delay)
        return False  # pragma: no cover - the loop always returns

    def _connect_ahead(self, number: int) -> None:
        """Start the SSH handshake for step ``number`` now, so that it overlaps the commits before the step runs,
        unless the open connection (or the one being opened) already logs in as that step's user."""
        if number > len(self.steps):
            return
        target = ssh.step_target(self.server, number, self.plan.settings.ssh_user)
        if self.conn is not None and self.conn_user == target.ssh_user:
            return
        if self.connecting is not None and self.connecting[0] == target.ssh_user:
            return
        connect = ssh.connect(target, self.p.client_key, timeout=self.settings.ssh_connect_timeout_seconds)
        self.connecting = (target.ssh_user, asyncio.create_task(connect))

    async def _connection(self, number: int) -> asyncssh.SSHClientConnection:
        """The connection step ``number`` runs on: root until the SSH hardening, the provisioning user after it."""
        target = ssh.step_target(self.server, number, self.plan.settings.ssh_user)
        if self.conn is not None and self.conn_user == target.ssh_user:
            return self.conn
        self._connect_ahead(number)
        assert self.connecting is not None
        user, task = self.connecting
        self.connecting = None
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        self.conn, self.conn_user = await task, user
        return self.conn

    def _ask_ahead(self, number: int) -> None:
        """While a step runs, ask the hub for what the next one renders: step 8's off-site target (the same each
        time) and step 10's registration tokens (an unused one just expires). Step 10's LLM key is not asked ahead:
        a new key retires the tenant's previous one, so it is issued only when step 10 runs."""
        if number in self.ahead or not any(s.number == number and s.status != StepStatus.SUCCEEDED for s in self.steps):
            return
        if number == 8:
            self.ahead[number] = asyncio.create_task(self.p.hub.backup_target(self.tenant_id))
        elif number == 10:
            self.ahead[number] = asyncio.create_task(self._tokens())

    async def _asked(self, number: int, ask: Callable[[], Awaitable[K]]) -> K:
        """The answer asked for ahead for step ``number`` (once: a retry asks again), or ``ask()`` now."""
        task = self.ahead.pop(number, None)
        return await task if task is not None else await ask()

    async def _offsite(self) -> None:
        """Step 8 renders the tenant's off-site backup target, which the hub issues (once per tenant)."""
        target = await self._asked(8, lambda: self.p.hub.backup_target(self.tenant_id))
        if target is not None:
            self.redact.add(target.secret_access_key, target.crypt_password, target.crypt_salt)
        self.plan.offsite = target

    async def _issued(self) -> tuple[dict[str, str], str]:
        """What the hub issues for step 10: fresh one-time registration tokens for the agents (a re-run asks again;
        unused ones just expire), then the tenant's LLM relay key (a re-run gets a new one; the previous one ends
        after the hub's grace period, by when the re-rendered Secrets Proxy has replaced it)."""
        tokens = await self._asked(10, self._tokens)
        key = (await self.p.hub.llm_key(self.tenant_id)).key
        self.redact.add(key)
        return tokens, key

    async def _tokens(self) -> dict[str, str]:
        """Fresh one-time registration tokens for the agents (a re-run asks again; unused ones just expire)."""
        body = {
            "domain": self.order.domain,
            "order_id": str(self.order_id),
            "tier": self.order.tier.value,
            "region": self.order.region.value,
            "server_id": str(self.server.server_id),
        }
        tokens = {}
        for agent in AGENTS:
            token = (await self.p.hub.registration_token(self.tenant_id, body)).token
            self.redact.add(token)
            tokens[agent] = token
        return tokens

    def _following(self, step: JobStep) -> JobStep | None:
        """The step execute() runs after ``step``, if any."""
        return next((s for s in self.steps if s.number > step.number and s.status != StepStatus.SUCCEEDED), None)

    async def _mark_running(self, step: JobStep) -> int:
        async with unit_of_work(self.p.sessions) as session:
            return await self._start_step(session, step)

    async def _start_step(self, session: AsyncSession, step: JobStep) -> int:
        fresh = {"attempt": JobStep.attempt + 1, "started_at": _now(), "finished_at": None, "exit_code": None}
        row = await self._move_step(session, step, StepStatus.RUNNING, error=None, **fresh)
        step.status, step.attempt = row.status, row.attempt
        return row.attempt

    async def _mark_done(self, step: JobStep, sink: LogSink, attempt: int, following: JobStep | None) -> None:
        """SUCCEEDED, and the step after it RUNNING in the same commit (its first attempt then starts without one of
        its own; after a crash in between it is resumed as a RUNNING step is, with its next attempt)."""
        async with sink.lock, unit_of_work(self.p.sessions) as session:
            await sink.flush_in(session, tail=False)  # the step's last lines precede its SUCCEEDED event
            row = await self._move_step(
                session, step, StepStatus.SUCCEEDED, exit_code=0, finished_at=_now(), output_tail=sink.tail_text()
            )
            step.status = row.status
            begun = None if following is None else (following.number, await self._start_step(session, following))
        self.begun = begun

    async def _mark_failed(
        self, step: JobStep, sink: LogSink, attempt: int, exit_code: int | None, error: str, *, retryable: bool
    ) -> None:
        async with sink.lock, unit_of_work(self.p.sessions) as session:
            await sink.flush_in(session, tail=False)
            row = await session.get(JobStep, (self.job_id, step.number), with_for_update=True)
            job = await session.get(Job, self.job_id, with_for_update=True)
            assert row is not None and job is not None
            outcome = {"exit_code": exit_code, "finished_at": _now(), "output_tail": sink.tail_text()}
            row = await self._move_step(session, row, StepStatus.FAILED, error=error[:4000], **outcome)
            await self.p._fail_job(
                session, job, step.number, f"step {step.number} {step.name} failed: {error}", retryable=retryable
            )
            step.status = row.status

    async def _move_step(self, session: AsyncSession, step: JobStep, to: StepStatus, **values: Any) -> JobStep:
        """The step's next state, from the one this run last gave it (the UPDATE checks it: the lease makes us its
        only writer), and its provisioning-step event in the same transaction."""
        ident = (self.job_id, step.number)
        row = await state.transition(session, STEP, ident, step.status, to, actor=self.p.owner, **values)
        await self._step_event(session, row)
        return row

    async def _step_event(self, session: AsyncSession, row: JobStep) -> None:
        await add_event(
            session,
            outbox,
            ProvisioningStepV1(
                order_id=self.order_id,
                job_id=self.job_id,
                step=row.number,
                name=row.name,
                status=StepStatus(row.status),
                attempt=max(row.attempt, 1),
                exit_code=row.exit_code,
                error=row.error[:4000] if row.error else None,
            ),
            correlation_id=str(self.order_id),
            event_id=event_id(self.job_id, f"step:{row.number}:{row.attempt}:{row.status}"),
        )

    # --- after step 10 --------------------------------------------------------------------------------------------

    async def _finish(self) -> None:
        """Wait (bounded, from when the steps were done) until the Safety Wrapper has registered; then provisioned."""
        async with unit_of_work(self.p.sessions) as session:
            job = await session.get(Job, self.job_id, with_for_update=True)
            assert job is not None
            if job.status == JobStatus.RUNNING:
                to = JobStatus.AWAITING_REGISTRATION
                job = await state.move(session, JOB, job, to, actor=self.p.owner, steps_done_at=_now())
            deadline = (job.steps_done_at or _now()) + timedelta(seconds=self.settings.registration_timeout_seconds)
        last_error = ""
        stored = False

        async def registered() -> bool:
            nonlocal last_error, stored
            try:
                if not stored:  # while the agents start; before provisioned: the welcome email links to these
                    await self.p.hub.put_credentials(self.tenant_id, self.plan.credentials())
                    stored = True
                if self.tenant_id in self.p.registered:
                    return True
                tenant = await self.p.hub.tenant(self.tenant_id)
                return tenant is not None and tenant.registered(AgentKind.SAFETY_WRAPPER)
            except HubError as exc:
                log.warning("hub poll failed", job_id=str(self.job_id), error=str(exc))
                if not exc.transient:
                    last_error = f": {exc}"
                return False

        # The hub's agent-registered event wakes this wait at once; the poll is the fallback for a lost one.
        with self.p.registrations.expect(self.tenant_id) as wake:
            try:
                done = await poll_until(
                    registered,
                    timeout=max(0.0, (deadline - _now()).total_seconds()),
                    backoff=Backoff.constant(self.settings.registration_poll_seconds),
                    wake=wake,
                )
            finally:
                self.p.registered.discard(self.tenant_id)
        if not done:
            step = self.steps[-1]
            sink = LogSink(self, step.number)
            await sink.close()
            await self._mark_failed(
                step,
                sink,
                step.attempt,
                None,
                f"the Safety Wrapper did not register with the Hub within "
                f"{self.settings.registration_timeout_seconds:g}s of step 10{last_error}",
                retryable=True,
            )
            return
        async with unit_of_work(self.p.sessions) as session:
            job = await session.get(Job, self.job_id, with_for_update=True)
            assert job is not None
            if job.status == JobStatus.SUCCEEDED:
                return
            job = await state.move(session, JOB, job, JobStatus.SUCCEEDED, actor=self.p.owner, finished_at=_now())
            await add_event(
                session,
                outbox,
                ProvisionedV1(
                    order=self.order,
                    server=self.server,
                    tenant_id=self.tenant_id,
                    job_id=self.job_id,
                    duration_seconds=max((job.finished_at - job.created_at).total_seconds(), 0.0),
                ),
                correlation_id=str(self.order_id),
                event_id=event_id(self.job_id, "provisioned"),
            )
            dkim = self.plan.dkim()
            if dkim is not None:
                # Stalwart runs behind open mail ports (steps 4 and 9) and signs with this key: the DNS service may
                # now publish the mail records, DKIM among them.
                await add_event(
                    session,
                    outbox,
                    MailReadyV1(
                        order=self.order,
                        server=self.server,
                        tenant_id=self.tenant_id,
                        dkim_selector=dkim[0],
                        dkim_public_key=dkim[1],
                    ),
                    correlation_id=str(self.order_id),
                    event_id=event_id(self.job_id, "mail-ready"),
                )
        JOBS_FINISHED.labels("provisioned").inc()
        log.info("provisioned", order_id=str(self.order_id), job_id=str(self.job_id))


class LogSink:
    """Redacts each output line, then batches lines into provisioning-log events (with their seq) every
    ``log_flush_seconds``, so the Hub shows a step live without a transaction per line."""

    def __init__(self, run: JobRun, step: int):
        self.run = run
        self.step = step
        self.pending: list[tuple[str, str]] = []
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.stderr: deque[str] = deque(maxlen=REASON_LINES)
        self.lock = asyncio.Lock()
        self._flusher = asyncio.create_task(self._flush_loop())

    async def add(self, stream: str, line: str) -> None:
        line = self.run.redact(line)
        self.pending.append((stream, line))
        self.tail.append(line)
        if stream == "stderr":
            self.stderr.append(line)

    async def note(self, line: str) -> None:
        """A line of our own (a retry notice) in the step's log."""
        await self.add("stderr", f"[provisioner] {line}")
        async with self.lock, unit_of_work(self.run.p.sessions) as session:
            await self.flush_in(session)

    def reason(self) -> str:
        lines = list(self.stderr) or list(self.tail)[-REASON_LINES:]
        return "\n".join(lines)[-3000:] or "no output"

    def tail_text(self) -> str:
        return "\n".join(self.tail)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.run.settings.log_flush_seconds)
            if not self.pending:
                continue
            try:
                async with self.lock, unit_of_work(self.run.p.sessions) as session:
                    await self.flush_in(session)
            except Exception as exc:  # lines stay pending; the step's final flush tries again
                log.warning("log flush failed", job_id=str(self.run.job_id), error=repr(exc))

    async def flush_in(self, session: AsyncSession, *, tail: bool = True) -> None:
        """Stage the pending lines; ``tail``: and the step's output tail (unless the caller's update sets it)."""
        if not self.pending:
            return
        lines, self.pending = self.pending, []
        try:
            end = (
                await session.execute(
                    update(Job)
                    .where(Job.id == self.run.job_id)
                    .values(log_seq=Job.log_seq + len(lines))
                    .returning(Job.log_seq)
                )
            ).scalar_one()
            first = end - len(lines)
            corr = str(self.run.order_id)
            rows = []
            for offset, (stream, line) in enumerate(lines):
                seq = first + offset
                ev = ProvisioningLogV1(
                    order_id=self.run.order_id,
                    job_id=self.run.job_id,
                    step=self.step,
                    seq=seq,
                    stream=stream,
                    line=line,
                )  # type: ignore[arg-type]
                env = ev.envelope(correlation_id=corr, event_id=event_id(self.run.job_id, f"log:{seq}"))
                rows.append({"event_id": env.id, "subject": ev.SUBJECT, "envelope": env.model_dump(mode="json")})
            await stage(session, outbox, rows)  # one multi-row insert per batch
            if tail:
                await session.execute(
                    update(JobStep)
                    .where(JobStep.job_id == self.run.job_id, JobStep.number == self.step)
                    .values(output_tail=self.tail_text())
                )
        except BaseException:
            self.pending[:0] = lines  # not committed: keep them for the next flush
            raise

    async def close(self) -> None:
        self._flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._flusher
