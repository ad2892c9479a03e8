"""The rules of approvals: one open request per exact call; decided once, by an operator, before it expires;
used once, by the same tenant, for the same call (the SHA-256 of its canonical arguments)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts.approvals import Approval, ApprovalCreate, ApprovalStatus
from letsbe_contracts.enums import AgentKind
from letsbe_hub.approvals import repository as repo
from letsbe_hub.approvals.errors import (
    ApprovalDecided,
    ApprovalExpired,
    ApprovalMismatch,
    ApprovalNotApproved,
    ApprovalNotFound,
    ApprovalUsed,
    WrongAgent,
)
from letsbe_hub.approvals.models import ApprovalRow
from letsbe_hub.tenants.auth import AgentPrincipal
from letsbe_platform.logging import get_logger

log = get_logger(__name__)


def view(row: ApprovalRow) -> Approval:
    return Approval(
        id=row.id, tenant_id=row.tenant_id, tool=row.tool, action=row.action, risk_class=row.risk_class,
        args_hash=row.args_hash, args_preview=row.args_preview, reasons=list(row.reasons),
        status=ApprovalStatus(row.status), requested_at=row.requested_at, expires_at=row.expires_at,
        decided_at=row.decided_at, decided_by=row.decided_by, decision_note=row.decision_note,
        consumed_at=row.consumed_at,
    )


def _require_wrapper(agent: AgentPrincipal) -> None:
    if agent.kind is not AgentKind.SAFETY_WRAPPER:
        raise WrongAgent("Only the tenant's Safety Wrapper asks for and uses approvals.")


async def request(session: AsyncSession, agent: AgentPrincipal, body: ApprovalCreate) -> tuple[Approval, bool]:
    """The approval for this call: a new PENDING one (True), or the one already pending (False)."""
    _require_wrapper(agent)
    await repo.expire_due(session, tenant_id=agent.tenant_id, args_hash=body.args_hash)
    row = await repo.insert_pending(session, {
        "tenant_id": agent.tenant_id, "agent_id": agent.agent_id, "tool": body.tool, "action": body.action,
        "risk_class": body.risk_class, "args_hash": body.args_hash, "args_preview": body.args_preview,
        "reasons": body.reasons, "expires_at": datetime.now(UTC) + timedelta(seconds=body.ttl_seconds),
    })
    if row is not None:
        log.info("approval requested", tenant_id=str(agent.tenant_id), approval_id=str(row.id), tool=body.tool,
                 action=body.action, risk_class=body.risk_class)
        return view(row), True
    existing = await repo.pending_for(session, agent.tenant_id, body.args_hash)
    assert existing is not None  # the conflict that stopped the insert is this row
    return view(existing), False


async def get_for_tenant(session: AsyncSession, agent: AgentPrincipal, approval_id: uuid.UUID) -> Approval:
    _require_wrapper(agent)
    await repo.expire_due(session, approval_id=approval_id)
    row = await repo.get(session, approval_id, agent.tenant_id)
    if row is None:
        raise ApprovalNotFound("This tenant has no approval with that id.")
    return view(row)


async def consume(session: AsyncSession, agent: AgentPrincipal, approval_id: uuid.UUID, args_hash: str) -> Approval:
    _require_wrapper(agent)
    await repo.expire_due(session, approval_id=approval_id)
    row = await repo.consume(session, approval_id, agent.tenant_id, args_hash)
    if row is not None:
        log.info("approval used", tenant_id=str(agent.tenant_id), approval_id=str(approval_id))
        return view(row)
    current = await repo.get(session, approval_id, agent.tenant_id)
    if current is None:
        raise ApprovalNotFound("This tenant has no approval with that id.")
    if current.args_hash != args_hash:
        raise ApprovalMismatch("The approval was granted for a different call.")
    if current.status == ApprovalStatus.EXPIRED:
        raise ApprovalExpired("The approval expired before it was used.")
    if current.status == ApprovalStatus.CONSUMED:
        raise ApprovalUsed("The approval was already used.")
    raise ApprovalNotApproved(f"The approval is {current.status}, not APPROVED.", current_status=current.status)


async def decide(session: AsyncSession, approval_id: uuid.UUID, approve: bool, by: str,
                 note: str | None) -> Approval:
    await repo.expire_due(session, approval_id=approval_id)
    decision = ApprovalStatus.APPROVED if approve else ApprovalStatus.REJECTED
    row = await repo.decide(session, approval_id, decision, by, note)
    if row is not None:
        log.info("approval decided", tenant_id=str(row.tenant_id), approval_id=str(approval_id),
                 status=row.status, by=by)
        return view(row)
    current = await repo.get(session, approval_id)
    if current is None:
        raise ApprovalNotFound("No approval with that id.")
    if current.status == ApprovalStatus.EXPIRED:
        raise ApprovalExpired("The approval expired before it was decided; the agent must ask again.")
    raise ApprovalDecided(f"The approval is already {current.status}.", current_status=current.status)
