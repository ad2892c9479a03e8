"""The provisioner's phases of the hub's tool-change job (``TenantToolChangeRequestedV1`` in, ``…ReportedV1`` out).

Only what the change touches is rendered and run over SSH, from the same templates as the pipeline:

- ``FINAL_BACKUP`` (remove): the tool's database dump, volumes and stack files into
  ``/var/backups/letsbe/final/<tool>/<job id>`` (made once: a complete one is never made again);
- ``STACK``, add: step 9 for that tool alone (stack, env files, backup config, vhost, setup), then the Safety
  Wrapper's routes (compose networks and tool URLs), recreating the wrapper only if they changed;
- ``STACK``, remove: the Safety Wrapper's routes first (so the tool's network is free), then the tool's vhost, stack
  with its volumes and files, each only if still there, and only once its final backup is complete.

No claim row: every script checks before it changes (files are written only when their content differs, a removal
removes what is still there), so a redelivery after a crash or a worker killed mid-script runs to the same end with
one change of each kind. The tenant's stored spec takes the new tool list when STACK succeeds, with its report, in
one transaction. Secret values never reach a log or a report (output is redacted like a step's).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import asyncssh
from sqlalchemy import select

from letsbe_contracts import DnsReadyV1
from letsbe_contracts.events import TenantToolChangeReportedV1, TenantToolChangeRequestedV1
from letsbe_platform.bus import Delivery
from letsbe_platform.db import unit_of_work
from letsbe_platform.logging import get_logger
from letsbe_platform.outbox import add_event
from letsbe_provisioner.db import outbox
from letsbe_provisioner.jobs import ssh
from letsbe_provisioner.jobs.hub import HubError
from letsbe_provisioner.jobs.models import Job, JobStatus
from letsbe_provisioner.jobs.redact import Redactor
from letsbe_provisioner.jobs.secrets import ensure_secrets
from letsbe_provisioner.jobs.service import Pipeline, build_plan
from letsbe_provisioner.rendering.plan import FINAL_BACKUP_DIR, Plan

log = get_logger(__name__)

NS = uuid.UUID("8d7e0b51-2f0c-4b8e-9a43-0c6e2a51d7f3")
PHASES = ("FINAL_BACKUP", "STACK")  # the DNS phase is the DNS service's
# Script output lines that say what changed, for the report (``put`` says "wrote <path>").
CHANGE_PREFIXES = ("wrote ", "removed ", "recreated ", "kept: ", "starting ", "imported ", "dumped ", "archived ")


class PhaseFailed(Exception):
    pass


def final_backup_dir(tool: str, job_id: uuid.UUID) -> str:
    return f"{FINAL_BACKUP_DIR}/{tool}/{job_id}"


class ToolChanger:
    """Runs the provisioner's tool-change phases; shares the pipeline's settings, database, secret box and SSH key."""

    def __init__(self, pipeline: Pipeline):
        self.p = pipeline
        self.settings = pipeline.settings

    async def on_requested(self, event: TenantToolChangeRequestedV1, delivery: Delivery | None = None) -> None:
        if event.phase not in PHASES:
            return  # the DNS service's phase
        keepalive = asyncio.create_task(self.p._keep_in_progress(delivery))
        redact = Redactor(self.p.static_secrets)
        changes: list[str] = []
        try:
            error = None
            try:
                await self._run(event, redact, changes)
            except PhaseFailed as exc:
                error = str(exc)
            except (ssh.ConnectionFailed, ssh.HostKeyMismatch, TimeoutError, HubError) as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            error = redact(error) if error else None
        finally:
            keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keepalive
        await self._report(event, changes, error)

    async def _report(self, event: TenantToolChangeRequestedV1, changes: list[str], error: str | None) -> None:
        status = "FAILED" if error else "SUCCEEDED"
        async with unit_of_work(self.p.sessions) as session:
            if status == "SUCCEEDED" and event.phase == "STACK":
                job = (
                    await session.execute(select(Job).where(Job.tenant_id == event.tenant_id).with_for_update())
                ).scalar_one()
                spec = DnsReadyV1.model_validate(job.spec)
                job.spec = spec.model_copy(
                    update={"order": spec.order.model_copy(update={"tools": event.order.tools})}
                ).model_dump(mode="json")
            await add_event(
                session,
                outbox,
                TenantToolChangeReportedV1(
                    job_id=event.job_id,
                    tenant_id=event.tenant_id,
                    phase=event.phase,
                    attempt=event.attempt,
                    status=status,
                    changes=tuple(c[:300] for c in changes[-50:]),
                    error=error[-4000:] if error else None,
                ),
                correlation_id=str(event.tenant_id),
                event_id=uuid.uuid5(NS, f"{event.job_id}:{event.phase}:{event.attempt}:{status}"),
            )
        bound = log.bind(tenant_id=str(event.tenant_id), job_id=str(event.job_id), phase=event.phase)
        if error:
            bound.error("tool-change phase failed", tool=event.tool, action=event.action, error=error)
        else:
            bound.info("tool-change phase done", tool=event.tool, action=event.action, changes=len(changes))

    async def _plans(self, event: TenantToolChangeRequestedV1, redact: Redactor) -> tuple[Plan, Plan]:
        """The tenant's rendering with the tools before and after the change."""
        after = tuple(event.order.tools)
        before = tuple(t for t in after if t != event.tool) if event.action == "add" else (*after, event.tool)
        async with unit_of_work(self.p.sessions) as session:
            job = (await session.execute(select(Job).where(Job.tenant_id == event.tenant_id))).scalar_one_or_none()
            if job is None or job.status != JobStatus.SUCCEEDED:
                raise PhaseFailed("the tenant is not provisioned (no succeeded provisioning job): nothing to change")
            # An added tool's secrets are made and stored here, before any server sees them (a rerun reuses them).
            secrets = await ensure_secrets(session, self.p.box, event.tenant_id, (*before, *after))
        redact.add(*secrets.values())

        def plan(tools: tuple[str, ...]) -> Plan:
            order = event.order.model_copy(update={"tools": tools})
            return build_plan(self.settings, self.p.client_key, order, event.server, secrets)

        return plan(before), plan(after)

    async def _run(self, event: TenantToolChangeRequestedV1, redact: Redactor, changes: list[str]) -> None:
        before, after = await self._plans(event, redact)
        backup = final_backup_dir(event.tool, event.job_id)
        if event.phase == "FINAL_BACKUP":
            scripts = [before.final_backup_script(event.tool, backup)]
        elif event.action == "add":
            scripts = [after.tool_add_script(event.tool), after.agent_routes_script(added=event.tool)]
            if after.stack(event.tool).profile.public_ports:
                scripts.insert(0, after.step_script(4))  # the firewall opens its ports first
        else:
            scripts = [after.agent_routes_script(), before.tool_remove_script(event.tool, backup)]
            if before.stack(event.tool).profile.public_ports:
                scripts.append(after.step_script(4))
        target = ssh.step_target(event.server, 9, after.settings.ssh_user)
        conn = await ssh.connect(target, self.p.client_key, timeout=self.settings.ssh_connect_timeout_seconds)
        try:
            for script in scripts:
                await self._script(conn, target.ssh_user, after.settings.root, script, redact, changes)
        finally:
            conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), 5)
        if event.action == "add" and event.phase == "STACK" and after.settings.apps_setup:
            await self.p.hub.put_credentials(event.tenant_id, after.credentials())  # the new tool's login, too

    async def _script(
        self, conn: asyncssh.SSHClientConnection, user: str, root: str, script: str, redact: Redactor,
        changes: list[str],
    ) -> None:  # fmt: skip
        lines: list[str] = []

        async def keep(stream: str, line: str) -> None:
            line = redact(line)
            lines.append(line)
            if stream == "stdout" and line.startswith(CHANGE_PREFIXES):
                changes.append(line)

        code = await ssh.run_script(
            conn, script, root=root, user=user, on_line=keep, timeout=self.settings.step_timeout_seconds
        )
        if code != 0:
            raise PhaseFailed(f"exit code {code}: " + ("\n".join(lines[-20:])[-3000:] or "no output"))
