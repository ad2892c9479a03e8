"""A decommission's work on the tenant's server: the provisioner's part of the hub's lifecycle job (tenant tasks:
``jobs.tasks``), because only the provisioner holds the SSH key.

``final-backup`` runs the tenant's own ``letsbe-backup`` once more, into ``final/<job id>`` (outside the nightly
rotation); ``stop-agents`` stops the Safety Wrapper and the Secrets Proxy. No row here: the hub's job id is the
idempotency key *on the server*. The scripts run under the server-wide provisioning lock (a run left by a provisioner
that died is waited for), and a finished final backup keeps its status next to its dumps, so a repeat (a redelivery,
the hub asking again) reports that run instead of taking another. Output is redacted.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select

from letsbe_contracts import DnsReadyV1
from letsbe_contracts.events import TaskResult, TaskSkipped, TenantTaskRequestedV1, fits_kind
from letsbe_platform.bus import Delivery
from letsbe_platform.db import unit_of_work
from letsbe_platform.logging import get_logger
from letsbe_provisioner.jobs import ssh
from letsbe_provisioner.jobs.models import Job
from letsbe_provisioner.jobs.redact import Redactor
from letsbe_provisioner.jobs.secrets import load_secrets
from letsbe_provisioner.jobs.service import EX_TEMPFAIL, TAIL_LINES, TRANSIENT_OUTPUT, Pipeline, build_plan
from letsbe_provisioner.jobs.tasks import Outcome

log = get_logger(__name__)

KINDS = ("final-backup", "stop-agents")
RESULT = "LETSBE-RESULT "
RESULTS: TypeAdapter[TaskResult] = TypeAdapter(TaskResult)


class TaskFailed(Exception):
    def __init__(self, message: str, *, transient: bool, result: TaskResult | None = None):
        super().__init__(message)
        self.transient, self.result = transient, result


class ServerTasks:
    """Runs server-task requests; shares the pipeline's settings, database, secret box and SSH key."""

    def __init__(self, pipeline: Pipeline):
        self.p = pipeline
        self.settings = pipeline.settings

    async def run(self, event: TenantTaskRequestedV1, delivery: Delivery | None = None) -> Outcome:
        redact = Redactor(self.p.static_secrets)
        async with unit_of_work(self.p.sessions) as session:
            job = (await session.execute(select(Job).where(Job.tenant_id == event.tenant_id))).scalar_one_or_none()
            secrets = await load_secrets(session, self.p.box, event.tenant_id) if job is not None else {}
        if job is None:  # never provisioned here: nothing on a server to back up or stop
            return Outcome("SUCCEEDED", result=TaskSkipped(skipped="the provisioner never provisioned this tenant"))
        redact.add(*secrets.values())
        spec = DnsReadyV1.model_validate(job.spec)
        plan = build_plan(self.settings, self.p.client_key, spec.order, spec.server, secrets)
        script = plan.server_task_script(event.task.kind, str(event.job_id))
        target = ssh.step_target(spec.server, 10, plan.settings.ssh_user)
        attempts, backoff = self.settings.step_attempts, self.settings.retry_backoff_seconds or (1.0,)
        error, result = "no attempt made", None
        for i in range(attempts):
            try:
                result = await self._script(target, plan.settings.root, script, redact, event.task.kind)
                return Outcome("SUCCEEDED", result=result)
            except TaskFailed as exc:
                error, transient, result = str(exc), exc.transient, exc.result
            except (ssh.ConnectionFailed, TimeoutError) as exc:
                error, transient = str(exc) or "timed out", True
            except ssh.HostKeyMismatch as exc:
                error, transient = str(exc), False
            error = redact(error)
            if not transient or i == attempts - 1:
                break
            log.warning("server task attempt failed; retrying", task=event.task.kind, error=error)
            await asyncio.sleep(backoff[min(i, len(backoff) - 1)])
        return Outcome("FAILED", error, result=result)

    async def _script(self, target: Any, root: str, script: str, redact: Redactor, kind: str) -> TaskResult:
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
        reported = [line.removeprefix(RESULT) for line in lines if line.startswith(RESULT)]
        result, invalid = _result(reported[-1], kind) if reported else (None, "")
        if code != 0:
            transient = code == EX_TEMPFAIL or any(TRANSIENT_OUTPUT.search(line) for line in lines)
            reason = "\n".join(line for line in lines[-20:] if not line.startswith(RESULT))[-3000:] or "no output"
            raise TaskFailed(f"exit code {code}: {reason}", transient=transient, result=result)
        if result is None:
            raise TaskFailed(f"the script reported {invalid or 'no result'}", transient=False)
        return result


def _result(line: str, kind: str) -> tuple[TaskResult | None, str]:
    """A script's result line, as a result the hub knows for a task of ``kind``; else None and what was wrong with
    it. (It comes from the tenant's server: a file there, ``backup-status.json``, may hold anything.)"""
    try:
        result = RESULTS.validate_json(line)
    except ValidationError as exc:
        first = exc.errors()[0]
        return None, f"a result the hub does not know ({first['msg']}; {len(exc.errors())} error(s))"
    if not fits_kind(result, kind):
        return None, f"a result the hub does not know (a {type(result).__name__} from a {kind} task)"
    return result, ""
