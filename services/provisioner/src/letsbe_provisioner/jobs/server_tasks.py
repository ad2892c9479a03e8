"""A decommission's work on the tenant's server: the provisioner's part of the hub's lifecycle job
(``TenantServerTaskRequestedV1`` in, ``…ReportedV1`` out), because only the provisioner holds the SSH key.

``final-backup`` runs the tenant's own ``letsbe-backup`` once more, into ``final/<task id>`` (outside the nightly
rotation); ``stop-agents`` stops the Safety Wrapper and the Secrets Proxy. No row here: the task id is the
idempotency key *on the server*. The scripts run under the server-wide provisioning lock (a run left by a provisioner
that died is waited for), and a finished final backup keeps its status next to its dumps, so a repeat of the task
(a redelivery, the hub asking again after a crash) reports that run instead of taking another. Output is redacted.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from sqlalchemy import select

from letsbe_contracts import DnsReadyV1
from letsbe_contracts.events import TenantServerTaskReportedV1, TenantServerTaskRequestedV1
from letsbe_platform.bus import Delivery
from letsbe_platform.db import unit_of_work
from letsbe_platform.logging import get_logger
from letsbe_platform.outbox import add_event
from letsbe_provisioner.db import outbox
from letsbe_provisioner.jobs import ssh
from letsbe_provisioner.jobs.models import Job
from letsbe_provisioner.jobs.redact import Redactor
from letsbe_provisioner.jobs.secrets import load_secrets
from letsbe_provisioner.jobs.service import EX_TEMPFAIL, TAIL_LINES, TRANSIENT_OUTPUT, Pipeline, build_plan

log = get_logger(__name__)

NS = uuid.UUID("8a3f5c1e-2b7d-4e9a-9c41-6d0e7b2f3a58")
RESULT = "LETSBE-RESULT "


class TaskFailed(Exception):
    def __init__(self, message: str, *, transient: bool, result: dict[str, Any] | None = None):
        super().__init__(message)
        self.transient, self.result = transient, result


class ServerTasks:
    """Runs server-task requests; shares the pipeline's settings, database, secret box and SSH key."""

    def __init__(self, pipeline: Pipeline):
        self.p = pipeline
        self.settings = pipeline.settings

    async def on_requested(self, event: TenantServerTaskRequestedV1, delivery: Delivery | None = None) -> None:
        keepalive = asyncio.create_task(self.p._keep_in_progress(delivery))
        try:
            status, result, error = await self._run(event)
        finally:
            keepalive.cancel()
        async with unit_of_work(self.p.sessions) as session:
            await add_event(
                session,
                outbox,
                TenantServerTaskReportedV1(
                    task_id=event.task_id,
                    tenant_id=event.tenant_id,
                    task=event.task,
                    status=status,
                    result=result,
                    error=error[:4000] if error else None,
                ),
                correlation_id=str(event.tenant_id),
                # One report per request delivered (the hub asks again with a new event after a failure).
                event_id=uuid.uuid5(NS, f"{event.task_id}:{delivery.event_id if delivery else 'direct'}:{status}"),
            )
        log_ = log.info if status == "SUCCEEDED" else log.error
        log_("server task done", tenant_id=str(event.tenant_id), task=event.task, status=status, error=error)

    async def _run(self, event: TenantServerTaskRequestedV1) -> tuple[Any, dict[str, Any] | None, str | None]:
        redact = Redactor(self.p.static_secrets)
        async with unit_of_work(self.p.sessions) as session:
            job = (await session.execute(select(Job).where(Job.tenant_id == event.tenant_id))).scalar_one_or_none()
            secrets = await load_secrets(session, self.p.box, event.tenant_id) if job is not None else {}
        if job is None:  # never provisioned here: nothing on a server to back up or stop
            return "SUCCEEDED", {"skipped": "the provisioner never provisioned this tenant"}, None
        redact.add(*secrets.values())
        spec = DnsReadyV1.model_validate(job.spec)
        plan = build_plan(self.settings, self.p.client_key, spec.order, spec.server, secrets)
        script = plan.server_task_script(event.task, str(event.task_id))
        target = ssh.step_target(spec.server, 10, plan.settings.ssh_user)
        attempts, backoff = self.settings.step_attempts, self.settings.retry_backoff_seconds or (1.0,)
        error, result = "no attempt made", None
        for i in range(attempts):
            try:
                return "SUCCEEDED", await self._script(target, plan.settings.root, script, redact), None
            except TaskFailed as exc:
                error, transient, result = str(exc), exc.transient, exc.result
            except (ssh.ConnectionFailed, TimeoutError) as exc:
                error, transient = str(exc) or "timed out", True
            except ssh.HostKeyMismatch as exc:
                error, transient = str(exc), False
            error = redact(error)
            if not transient or i == attempts - 1:
                break
            log.warning("server task attempt failed; retrying", task=event.task, error=error)
            await asyncio.sleep(backoff[min(i, len(backoff) - 1)])
        return "FAILED", result, error

    async def _script(self, target: Any, root: str, script: str, redact: Redactor) -> dict[str, Any]:
        conn = await ssh.connect(target, self.p.client_key, timeout=self.settings.ssh_connect_timeout_seconds)
        lines: list[str] = []

        async def keep(stream: str, line: str) -> None:
            lines.append(redact(line))
            del lines[:-TAIL_LINES]

        try:
            code = await ssh.run_script(
                conn, script, root=root, user=target.ssh_user, on_line=keep, timeout=self.settings.step_timeout_seconds
            )
        finally:
            conn.close()
        results = [line.removeprefix(RESULT) for line in lines if line.startswith(RESULT)]
        result = json.loads(results[-1]) if results else None
        if code != 0:
            transient = code == EX_TEMPFAIL or any(TRANSIENT_OUTPUT.search(line) for line in lines)
            reason = "\n".join(line for line in lines[-20:] if not line.startswith(RESULT))[-3000:] or "no output"
            raise TaskFailed(f"exit code {code}: {reason}", transient=transient, result=result)
        if result is None:
            raise TaskFailed("the script reported no result", transient=False)
        return result
