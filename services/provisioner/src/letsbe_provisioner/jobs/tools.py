"""The provisioner's phases of the hub's tool-change job (tenant tasks: ``jobs.tasks``).

Only what the change touches is rendered and run over SSH, from the same templates as the pipeline:

- ``tool-backup`` (remove): the tool's database dump, volumes and stack files into
  ``/var/backups/letsbe/final/<tool>/<job id>`` (made once: a complete one is never made again);
- ``tool-stack``, add: step 9 for that tool alone (stack, env files, backup config, vhost, setup), then the Safety
  Wrapper's routes (compose networks and tool URLs), recreating the wrapper only if they changed;
- ``tool-stack``, remove: the Safety Wrapper's routes first (so the tool's network is free), then the tool's vhost,
  stack with its volumes and files, each only if still there, and only once its final backup is complete.

No claim row: every script checks before it changes (files are written only when their content differs, a removal
removes what is still there), so a redelivery after a crash or a worker killed mid-script runs to the same end with
one change of each kind. The tenant's stored spec takes the new tool list when the stack succeeds, with its report,
in one transaction. Secret values never reach a log or a report (output is redacted like a step's).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import asyncssh
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts import DnsReadyV1
from letsbe_contracts.events import TenantTaskRequestedV1, ToolChangeTask
from letsbe_platform.bus import Delivery
from letsbe_platform.db import unit_of_work
from letsbe_provisioner.jobs import ssh
from letsbe_provisioner.jobs.hub import HubError
from letsbe_provisioner.jobs.models import Job, JobStatus
from letsbe_provisioner.jobs.redact import Redactor
from letsbe_provisioner.jobs.secrets import ensure_secrets
from letsbe_provisioner.jobs.service import Pipeline, build_plan
from letsbe_provisioner.jobs.tasks import Outcome
from letsbe_provisioner.rendering.plan import FINAL_BACKUP_DIR, Plan

KINDS = ("tool-backup", "tool-stack")  # tool-dns is the DNS service's
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

    async def run(self, event: TenantTaskRequestedV1, delivery: Delivery | None = None) -> Outcome:
        change = event.task
        assert isinstance(change, ToolChangeTask)
        redact = Redactor(self.p.static_secrets)
        changes: list[str] = []
        error = None
        try:
            await self._run(event, change, redact, changes)
        except PhaseFailed as exc:
            error = str(exc)
        except (ssh.ConnectionFailed, ssh.HostKeyMismatch, TimeoutError, HubError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if error:
            return Outcome("FAILED", redact(error), changes)

        async def keep_tools(session: AsyncSession) -> None:  # the tenant's stored spec takes the new tool list
            stmt = select(Job).where(Job.tenant_id == event.tenant_id).with_for_update()
            job = (await session.execute(stmt)).scalar_one()
            spec = DnsReadyV1.model_validate(job.spec)
            order = spec.order.model_copy(update={"tools": change.order.tools})
            job.spec = spec.model_copy(update={"order": order}).model_dump(mode="json")

        return Outcome("SUCCEEDED", changes=changes, commit=keep_tools if change.kind == "tool-stack" else None)

    async def _plans(self, tenant_id: uuid.UUID, change: ToolChangeTask, redact: Redactor) -> tuple[Plan, Plan]:
        """The tenant's rendering with the tools before and after the change."""
        after = tuple(change.order.tools)
        before = tuple(t for t in after if t != change.tool) if change.action == "add" else (*after, change.tool)
        async with unit_of_work(self.p.sessions) as session:
            job = (await session.execute(select(Job).where(Job.tenant_id == tenant_id))).scalar_one_or_none()
            if job is None or job.status != JobStatus.SUCCEEDED:
                raise PhaseFailed("the tenant is not provisioned (no succeeded provisioning job): nothing to change")
            # An added tool's secrets are made and stored here, before any server sees them (a rerun reuses them).
            secrets = await ensure_secrets(session, self.p.box, tenant_id, (*before, *after))
        redact.add(*secrets.values())

        def plan(tools: tuple[str, ...]) -> Plan:
            order = change.order.model_copy(update={"tools": tools})
            return build_plan(self.settings, self.p.client_key, order, change.server, secrets)

        return plan(before), plan(after)

    async def _run(
        self, event: TenantTaskRequestedV1, change: ToolChangeTask, redact: Redactor, changes: list[str]
    ) -> None:
        before, after = await self._plans(event.tenant_id, change, redact)
        tool, backup = change.tool, final_backup_dir(change.tool, event.job_id)
        if change.kind == "tool-backup":
            scripts = [before.final_backup_script(tool, backup)]
        elif change.action == "add":
            scripts = [after.tool_add_script(tool), after.agent_routes_script(added=tool)]
            if after.stack(tool).profile.public_ports:
                scripts.insert(0, after.step_script(4))  # the firewall opens its ports first
        else:
            scripts = [after.agent_routes_script(), before.tool_remove_script(tool, backup)]
            if before.stack(tool).profile.public_ports:
                scripts.append(after.step_script(4))
        target = ssh.step_target(change.server, 9, after.settings.ssh_user)
        conn = await ssh.connect(target, self.p.client_key, timeout=self.settings.ssh_connect_timeout_seconds)
        try:
            for script in scripts:
                await self._script(conn, target.ssh_user, after.settings.root, script, redact, changes)
        finally:
            conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), 5)
        if change.action == "add" and change.kind == "tool-stack" and after.settings.apps_setup:
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
