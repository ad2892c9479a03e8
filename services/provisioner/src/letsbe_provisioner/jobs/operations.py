"""Tenant operations for the hub's restore, recovery and migration jobs (``TenantOperationRequestedV1`` in,
``TenantOperationReportedV1`` out): provision a tenant on another server, take a consistent backup, restore a
backup set, check that the tools answer. ``switch-dns`` is the DNS service's.

Each is safe to run again, which is what a redelivery (or the hub asking again after a crash) does before the
report is claimed in the inbox: provisioning is the tenant's job row (a finished job on the same server is only
reported; on another server all ten steps run there); a restore carries the operation id to ``letsbe-restore
--id``, which does not load a set a second time; a backup of the same day replaces that day's set; the check only
reads. Output is redacted like a step's; the report carries the outcome, never a secret.
"""

from __future__ import annotations

import asyncio
import shlex
import uuid
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts import DnsReadyV1
from letsbe_contracts.events import TenantOperationReportedV1, TenantOperationRequestedV1
from letsbe_platform.bus import Delivery
from letsbe_platform.db import unit_of_work
from letsbe_platform.logging import get_logger
from letsbe_platform.outbox import add_event, handled, inboxed
from letsbe_provisioner.db import inbox, outbox
from letsbe_provisioner.jobs import ssh
from letsbe_provisioner.jobs.models import Job, JobStatus
from letsbe_provisioner.jobs.redact import Redactor
from letsbe_provisioner.jobs.secrets import load_secrets
from letsbe_provisioner.jobs.service import TAIL_LINES, Pipeline, build_plan
from letsbe_provisioner.rendering.plan import RESTORE_SCRIPT, Plan

log = get_logger(__name__)

DURABLE = "provisioner-on-tenant-operation-requested"
MINE = frozenset({"provision", "backup", "restore", "verify"})


class Operations:
    def __init__(self, pipeline: Pipeline):
        self.p = pipeline
        self.settings = pipeline.settings
        self.sessions = pipeline.sessions

    async def on_requested(self, event: TenantOperationRequestedV1, delivery: Delivery) -> None:
        if event.action not in MINE:
            return
        async with unit_of_work(self.sessions) as session:
            if await handled(session, inbox, delivery.consumer, delivery.event_id):
                return
        started = datetime.now(UTC)
        keepalive = asyncio.create_task(self.p._keep_in_progress(delivery))
        try:
            status, detail = await self._run(event, delivery)
        finally:
            keepalive.cancel()
        await self._report(event, delivery, started, status, detail)

    @inboxed(inbox)
    async def _report(
        self,
        session: AsyncSession,
        event: TenantOperationRequestedV1,
        delivery: Delivery,
        started: datetime,
        status: str,
        detail: str,
    ) -> None:
        report = TenantOperationReportedV1(
            operation_id=event.operation_id, job_id=event.job_id, tenant_id=event.tenant_id, action=event.action,
            status=status, started_at=started, finished_at=datetime.now(UTC), detail=detail[:4000] or None,
        )  # fmt: skip
        await add_event(
            session, outbox, report, correlation_id=str(event.tenant_id),
            event_id=uuid.uuid5(event.operation_id, "reported"),
        )  # fmt: skip
        log.info("tenant operation", tenant_id=str(event.tenant_id), action=event.action, status=status)

    async def _run(self, event: TenantOperationRequestedV1, delivery: Delivery | None) -> tuple[str, str]:
        if event.action == "provision":
            return await self._provision(event, delivery)
        plan = await self._plan(event)
        redact = Redactor([*self.p.static_secrets, *plan.secrets.values()])
        root = shlex.quote(plan.settings.root)
        if event.action == "restore":
            args = ["--set", event.backup_set or "latest", "--id", event.operation_id.hex]
            if event.tool:
                args += ["--tool", event.tool]
            script = f'ROOT={root}\nexec "$ROOT{RESTORE_SCRIPT}" {shlex.join(args)}\n'
        elif event.action == "backup":
            # Consistent: the tools' apps stop first (their databases keep running for the dump) and stay stopped,
            # since the tenant moves on from here; the set's name is the day letsbe-backup writes.
            stop = "docker ps -q --filter label=biz.letsbe.managed=true | xargs -r docker stop >/dev/null\n"
            script = (
                f"set -euo pipefail\nROOT={root}\n" + (stop if event.stop_tools else "")
                + '"$ROOT/usr/local/sbin/letsbe-backup"\necho "backup set $(date -u +%F)"\n'
            )  # fmt: skip
        else:
            script = verify_script(plan, self.settings.verify_seconds)
        code, lines = await self._script(event, plan, script, redact)
        tail = "\n".join(lines[-20:])[-3000:]
        if code != 0:
            return "FAILED", f"{event.action} exited {code}: {tail or 'no output'}"
        if event.action == "backup":
            return "SUCCEEDED", next((ln.split()[-1] for ln in reversed(lines) if ln.startswith("backup set ")), "")
        if event.action == "restore":
            return "SUCCEEDED", event.backup_set or "latest"
        return "SUCCEEDED", tail

    async def _plan(self, event: TenantOperationRequestedV1) -> Plan:
        async with unit_of_work(self.p.sessions) as session:
            secrets = await load_secrets(session, self.p.box, event.tenant_id)
        return build_plan(self.settings, self.p.client_key, event.order, event.server, secrets)

    async def _script(
        self, event: TenantOperationRequestedV1, plan: Plan, script: str, redact: Redactor
    ) -> tuple[int, list[str]]:
        target = ssh.step_target(event.server, 10, plan.settings.ssh_user)
        lines: list[str] = []

        async def keep(stream: str, line: str) -> None:
            lines.append(redact(line))
            del lines[:-TAIL_LINES]

        try:
            conn = await ssh.connect(target, self.p.client_key, timeout=self.settings.ssh_connect_timeout_seconds)
        except (ssh.ConnectionFailed, ssh.HostKeyMismatch, TimeoutError) as exc:
            return 255, [redact(str(exc) or "connection timed out")]
        try:
            code = await ssh.run_script(
                conn, script, root=plan.settings.root, user=target.ssh_user, on_line=keep,
                timeout=self.settings.step_timeout_seconds,
            )  # fmt: skip
        except (ssh.ConnectionFailed, TimeoutError) as exc:
            return 255, [*lines, redact(str(exc) or "timed out")]
        finally:
            conn.close()
        return code, lines

    async def _provision(self, event: TenantOperationRequestedV1, delivery: Delivery | None) -> tuple[str, str]:
        """The tenant's ten steps on ``event.server`` (its job row, with its secrets: the same passwords, so the
        restored databases' users match the new stacks)."""
        await self.p.on_dns_ready(DnsReadyV1(order=event.order, server=event.server, records=()), delivery)
        async with self.p.sessions() as session:
            job = (await session.execute(select(Job).where(Job.order_id == event.order.order_id))).scalar_one()
        on_it = DnsReadyV1.model_validate(job.spec).server.server_id == event.server.server_id
        if job.status == JobStatus.SUCCEEDED and on_it:
            return "SUCCEEDED", f"provisioned on {event.server.ipv4} (run {job.run})"
        return "FAILED", f"provisioning {job.status}: {job.error or 'not on this server'}"


def verify_script(plan: Plan, seconds: int) -> str:
    """Every tool's app answers HTTP (below 500) on its local port, what nginx proxies to, within ``seconds``."""
    ports = " ".join(f"{st.name}:{st.tool.host_port}" for st in plan.stacks)
    return f"""set -uo pipefail
failed=0
for tp in {ports}; do
  tool=${{tp%%:*}}; port=${{tp##*:}}; ok=0
  for _ in $(seq {seconds}); do
    code=$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 "http://127.0.0.1:$port/" || true)
    if [ "${{code:-000}}" != 000 ] && [ "$code" -lt 500 ]; then ok=1; break; fi
    sleep 1
  done
  if [ "$ok" = 1 ]; then echo "$tool answers ($code)"; else echo "$tool does not answer on $port"; failed=1; fi
done
exit "$failed"
"""
