"""Tools on a live tenant: the ``tool-change`` lifecycle job (one tool added or removed, seed §5.3).

Asked for by an operator (``POST/DELETE /api/v1/admin/tenants/{id}/tools``, ``letsbe-hub tenants add-tool``) or by the
tenant's IT agent through its Safety Wrapper once an operator approved the exact call (``POST
/api/v1/tenant/tool-changes``). A request is checked before anything happens: the tool is in the catalog (else 422),
it is absent for an add and present for a remove, the tenant is live with no other tool change unfinished, and with
the tool the tenant's stacks still fit its tier's memory budget (the calculator's rule: ``catalog.service.size``).

The job's phases are each a task asked of the service that owns the effect and left on its report
(``letsbe_hub.lifecycle.exchange``):

- add: DNS (the tool's subdomain record where the zone has no wildcard) → STACK (its stack, vhost, backup config,
  the Safety Wrapper's routes to it);
- remove: FINAL_BACKUP (its database dump and files kept on the server) → STACK (all of it taken away) → DNS.

Each phase is idempotent where it runs, so an ask repeated (its report late) or a worker killed anywhere leaves one
effect. The order's tool list (what the hub says the tenant runs) changes in
the transaction that moves the job to SUCCEEDED, and only then.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from functools import partial
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts import Catalog, OrderStatus
from letsbe_contracts.approvals import ApprovalStatus, call_hash
from letsbe_contracts.events import ToolChangeTask
from letsbe_hub.approvals.models import ApprovalRow
from letsbe_hub.catalog.service import size, validate_tools
from letsbe_hub.lifecycle import exchange, state
from letsbe_hub.lifecycle.models import JobStatus as J
from letsbe_hub.lifecycle.models import LifecycleJob
from letsbe_hub.lifecycle.state import TOOL_CHANGE
from letsbe_hub.orders.models import Order
from letsbe_hub.orders.service import spec as order_spec
from letsbe_hub.servers.models import Server
from letsbe_hub.servers.service import target
from letsbe_hub.tenants.models import Tenant, TenantState
from letsbe_platform.db import unit_of_work
from letsbe_platform.errors import Conflict, NotFound
from letsbe_platform.logging import get_logger

log = get_logger(__name__)

Action = Literal["add", "remove"]
PHASES: dict[str, tuple[str, ...]] = {"add": (J.DNS, J.STACK), "remove": (J.FINAL_BACKUP, J.STACK, J.DNS)}
TASKS = {J.DNS: "tool-dns", J.FINAL_BACKUP: "tool-backup", J.STACK: "tool-stack"}  # each phase's task
# The IT agent's calls, as the Safety Wrapper's policy names them (tool "letsbe"): the approval is bound to these.
AGENT_TOOL, AGENT_ACTIONS = "letsbe", {"add": "tools.add", "remove": "tools.remove"}
ACTOR = "lifecycle-worker"
MAIL_TOOL = "stalwart"  # its DNS records come with mail-ready (letsbe_dns.records.plan.mail_plan)


class ToolAlreadyPresent(Conflict):
    type, title = "tool-already-present", "The tenant already runs this tool"


class ToolAbsent(Conflict):
    type, title = "tool-absent", "The tenant does not run this tool"


class OverMemoryBudget(Conflict):
    type, title = "over-memory-budget", "The tools would not fit the tier's memory budget"


class ToolChangeBusy(Conflict):
    type, title = "tool-change-in-progress", "Another tool change of this tenant is unfinished"


class TenantNotLive(Conflict):
    type, title = "tenant-not-live", "The tenant is not live"


class ApprovalMissing(Conflict):
    type, title = "approval-missing", "No consumed approval for this call"


class MailToolFixed(Conflict):
    type, title = "mail-tool-fixed", "The mail server is not added or removed on a live tenant"


# --- the request ----------------------------------------------------------------------------------------------------


def check_budget(tier: str, tools: list[str] | tuple[str, ...], catalog: Catalog | None = None) -> None:
    """Refuse a tool set whose stacks plus the LetsBe overhead exceed the tier's memory (the calculator's rule)."""
    sizing = size(tools, catalog)
    fit = sizing.fit(tier)  # type: ignore[arg-type]
    if sizing.total_ram_mb > fit.ram_mb:
        raise OverMemoryBudget(
            f"With these tools the tenant needs {sizing.total_ram_mb} MB of memory; its {tier} tier has "
            f"{fit.ram_mb} MB.",
            tier=tier,
            needed_mb=sizing.total_ram_mb,
            budget_mb=fit.ram_mb,
            recommended_tier=sizing.recommended_tier.value if sizing.recommended_tier else None,
        )


def tools_after(current: list[str], action: Action, tool: str) -> list[str]:
    """The tenant's tool list once the change is done; refuses an unknown tool (422), a tool already there (add) or
    not there (remove), and the mail server (409)."""
    validate_tools([tool])
    if tool == MAIL_TOOL:
        raise MailToolFixed(
            "The mail server is set up with the order: its mail records (MX, SPF, DKIM, DMARC) and the domain's "
            "existing mail are not moved by a tool change.",
            tool=tool,
        )
    if action == "add":
        if tool in current:
            raise ToolAlreadyPresent(f"The tenant already runs {tool}.", tool=tool, tools=current)
        return [*current, tool]
    if tool not in current:
        raise ToolAbsent(f"The tenant does not run {tool}.", tool=tool, tools=current)
    return [t for t in current if t != tool]


async def request_change(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    action: Action,
    tool: str,
    *,
    actor: str,
    now: datetime,
    reason: str | None = None,
    approval_id: uuid.UUID | None = None,
) -> LifecycleJob:
    """Check the change and create its job (one unfinished tool change per tenant: the tenant row is locked)."""
    validate_tools([tool])  # 422 before anything else
    tenant = await session.get(Tenant, tenant_id, with_for_update=True)
    order = await session.get(Order, tenant_id)
    if tenant is None or order is None:
        raise NotFound("No tenant with that id.", tenant_id=str(tenant_id))
    if tenant.status != TenantState.ACTIVE or order.status != OrderStatus.FULFILLED or tenant.server_id is None:
        raise TenantNotLive(
            f"Tools are changed on a live tenant only; this one is {tenant.status} (order {order.status}).",
            tenant_status=tenant.status,
            order_status=order.status,
        )
    busy = (
        await session.execute(
            select(LifecycleJob.id, LifecycleJob.status).where(
                LifecycleJob.tenant_id == tenant_id,
                LifecycleJob.kind == TOOL_CHANGE,
                LifecycleJob.finished_at.is_(None),
            )
        )
    ).first()
    if busy is not None:
        raise ToolChangeBusy(
            f"The tenant's tool change {busy.id} is {busy.status}: let it finish (or retry it) first.",
            job_id=str(busy.id),
            job_status=busy.status,
        )
    after = tools_after(list(order.tools), action, tool)
    if action == "add":
        check_budget(order.tier, after)
    count = (
        await session.execute(
            select(func.count()).where(LifecycleJob.tenant_id == tenant_id, LifecycleJob.kind == TOOL_CHANGE)
        )
    ).scalar_one()
    job, _ = await state.create(
        session,
        kind=TOOL_CHANGE,
        key=f"tool-change:{tenant_id}:{count + 1}",
        tenant_id=tenant_id,
        server_id=tenant.server_id,
        due_at=now,
        actor=actor,
        reason=reason or f"{action} {tool}",
        data={
            "action": action,
            "tool": tool,
            "tools_before": list(order.tools),
            "tools_after": after,
            "approval_id": str(approval_id) if approval_id else None,
        },
    )
    log.info("tool change requested", tenant_id=str(tenant_id), job_id=str(job.id), action=action, tool=tool)
    return job


async def approved_agent_call(session: AsyncSession, tenant_id: uuid.UUID, action: Action, tool: str) -> uuid.UUID:
    """The consumed approval behind an IT agent's tool change, not used for a job yet: the hub does not take the
    wrapper's word for it (one approval, one job)."""
    digest = call_hash(AGENT_TOOL, AGENT_ACTIONS[action], {"tool": tool})
    consumed = (
        await session.execute(
            select(ApprovalRow.id)
            .where(ApprovalRow.tenant_id == tenant_id, ApprovalRow.args_hash == digest)
            .where(ApprovalRow.status == ApprovalStatus.CONSUMED)
            .order_by(ApprovalRow.consumed_at.desc())
        )
    ).scalars()
    used = select(LifecycleJob.data["approval_id"].astext).where(
        LifecycleJob.tenant_id == tenant_id, LifecycleJob.kind == TOOL_CHANGE
    )
    taken = {v for v in (await session.execute(used)).scalars() if v}
    for approval_id in consumed:
        if str(approval_id) not in taken:
            return approval_id
    raise ApprovalMissing(
        f"No approved and consumed call {AGENT_TOOL}.{AGENT_ACTIONS[action]} for {tool} that is not used yet.",
        tool=tool,
        action=action,
    )


# --- the worker's step ----------------------------------------------------------------------------------------------


async def _task(session: AsyncSession, job: LifecycleJob) -> ToolChangeTask:
    """The task of the job's current phase: the tool, and the tenant's order with its tools after the change."""
    order = await session.get(Order, job.tenant_id)
    server = await session.get(Server, job.server_id) if job.server_id else None
    if order is None or server is None:
        raise RuntimeError("the tenant's order or server row is gone")
    spec = order_spec(order).model_copy(update={"tools": tuple(job.data["tools_after"])})
    return ToolChangeTask(
        kind=TASKS[job.status], action=job.data["action"], tool=job.data["tool"], order=spec, server=target(server)
    )  # type: ignore[arg-type]


def next_phase(job: LifecycleJob) -> str:
    phases = PHASES[job.data["action"]]
    if job.status == J.REQUESTED:
        return phases[0]
    i = phases.index(job.status)
    return phases[i + 1] if i + 1 < len(phases) else J.SUCCEEDED


async def finish(session: AsyncSession, job: LifecycleJob, owner: str, report: dict[str, Any]) -> LifecycleJob:
    """The last phase reported success: the tenant's tool list changes with the job's SUCCEEDED, in one transaction."""
    order = await session.get(Order, job.tenant_id, with_for_update=True)
    assert order is not None
    order.tools = list(job.data["tools_after"])
    action, tool = job.data["action"], job.data["tool"]
    return await state.transition(
        session,
        job.id,
        J.SUCCEEDED,
        actor=ACTOR,
        reason=f"{tool} {'added' if action == 'add' else 'removed'}; {_summary(job.status, report)}",
        expected=job.status,
        lease_owner=owner,
        attempts=0,
    )


async def step(runner: Any, job: LifecycleJob) -> None:
    """The worker's step for a tool-change job (``runner``: the JobRunner holding the lease): each phase in turn, on
    once its task is reported done. Raises Wait, or TaskFailed (a failed attempt)."""
    owner = runner.owner
    if job.status == J.REQUESTED:
        job = await runner._advance(job, next_phase(job), f"{job.data['action']} {job.data['tool']}")
    while True:
        report = await exchange.outcome(runner, job, TASKS[job.status], partial(_task, job=job))
        to = next_phase(job)
        async with unit_of_work(runner.sessions) as s:
            if to == J.SUCCEEDED:
                await finish(s, job, owner, report)
                log.info("tool change done", tenant_id=str(job.tenant_id), job_id=str(job.id), tool=job.data["tool"])
                return
            job = await state.transition(
                s, job.id, to, actor=ACTOR, reason=_summary(job.status, report), expected=job.status,
                lease_owner=owner, attempts=0,
            )  # fmt: skip


def _summary(phase: str, report: dict[str, Any]) -> str:
    changes = report.get("changes") or []
    return f"{phase} done: " + ("; ".join(changes)[:1500] if changes else "nothing to change")
