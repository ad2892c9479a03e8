"""The rules of a tool call: kill switch → classify → secret bindings → EXECUTE or GATE_FOR_APPROVAL → limits →
(approval check) → substitute secrets → run → scrub → audit. Every outcome, refusals included, is audited."""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from letsbe_contracts.approvals import Approval, ApprovalCreate, ApprovalStatus
from letsbe_platform.errors import DomainError, Unprocessable
from letsbe_platform.logging import get_logger
from letsbe_safety_wrapper.tools.approvals import ApprovalAuthority
from letsbe_safety_wrapper.tools.audit import AuditLog
from letsbe_safety_wrapper.tools.errors import (
    ApprovalExpired,
    ApprovalMismatch,
    ApprovalRejected,
    ApprovalUsed,
    HubUnavailable,
    KillSwitchEngaged,
    NoExecutor,
    SecretNotAllowed,
)
from letsbe_safety_wrapper.tools.executors import Executor, ToolResult
from letsbe_safety_wrapper.tools.limits import CallLimiter
from letsbe_safety_wrapper.tools.policy import Classification, Decision, Policy, call_hash, canonical_json
from letsbe_safety_wrapper.tools.schemas import (
    MAX_CALL_BYTES,
    ActionInfo,
    ToolCall,
    ToolCallOutcome,
    ToolOutput,
    ToolsStatus,
    parse_call,
)
from letsbe_safety_wrapper.tools.secrets import SecretStore
from letsbe_safety_wrapper.tools.state import StateFile

log = get_logger(__name__)

AUDIT_ARGS_MAX = 4096
_PATH_ARG = re.compile(r"\{([A-Za-z0-9_]+)\}")


def _now() -> datetime:
    return datetime.now(UTC)


class ToolService:
    def __init__(
        self,
        *,
        policy: Policy,
        secrets: SecretStore | None,
        audit: AuditLog,
        state: StateFile,
        approvals: ApprovalAuthority | None,
        executors: dict[str, Executor],
        limiter: CallLimiter | None = None,
        clock: Callable[[], datetime] = _now,
    ):
        self.policy = policy
        self.secrets = secrets
        self.audit = audit
        self.state = state
        self.approvals = approvals
        self.executors = executors
        self.limiter = limiter or CallLimiter()
        self._clock = clock
        self._inflight: set[uuid.UUID] = set()
        self._approval_lock = asyncio.Lock()

    # --- the hub's levers ----------------------------------------------------------------------------------

    async def set_kill_switch(self, engaged: bool, reason: str | None, actor: str) -> None:
        self.state.set_kill_switch(engaged, reason)
        await self.audit.append(event="kill_switch", engaged=engaged, reason=reason, actor=actor)
        log.warning("kill switch changed", engaged=engaged, actor=actor)

    async def set_autonomy(self, level: int, actor: str) -> None:
        if level not in self.policy.levels:
            raise Unprocessable(f"Unknown autonomy level {level}; known: {sorted(self.policy.levels)}.")
        previous = self.state.state.autonomy_level
        self.state.set_autonomy(level)
        await self.audit.append(event="autonomy", level=level, previous=previous, actor=actor)
        log.info("autonomy level changed", level=level, previous=previous, actor=actor)

    def status(self) -> ToolsStatus:
        st = self.state.state
        level = self.policy.levels.get(st.autonomy_level)
        actions = [
            ActionInfo(tool=tool, action=action, risk_class=spec.risk, description=spec.description,
                       decision=self.policy.decide(spec.risk, st.autonomy_level), secret_args=spec.secret_args)
            for tool, tp in sorted(self.policy.doc.tools.items())
            for action, spec in sorted(tp.actions.items())
        ]
        return ToolsStatus(
            autonomy_level=st.autonomy_level, autonomy_name=level.name if level else "unknown",
            kill_switch=st.kill_switch, kill_switch_reason=st.kill_switch_reason,
            audit_entries=self.audit.seq, audit_head=self.audit.head, actions=actions,
        )

    # --- a call --------------------------------------------------------------------------------------------

    async def execute_raw(self, raw: bytes, max_bytes: int = MAX_CALL_BYTES) -> ToolCallOutcome:
        """A call as the agent sent it: a malformed or oversized one is refused with a 4xx and audited like any
        other (``raw`` may be cut short at ``max_bytes + 1``: the endpoint stops reading there)."""
        try:
            call = parse_call(raw, max_bytes)
        except DomainError as exc:
            await self.audit.append(event="tool_call", call_id=str(uuid.uuid4()), outcome="rejected",
                                    error=exc.type, detail=exc.detail, body_bytes=len(raw),
                                    body_sha256=hashlib.sha256(raw).hexdigest())
            raise
        return await self.execute(call)

    async def execute(self, call: ToolCall) -> ToolCallOutcome:
        digest = call_hash(call.tool, call.action, call.args)
        level = self.state.state.autonomy_level
        record: dict[str, Any] = {
            "event": "tool_call", "call_id": str(uuid.uuid4()), "tool": call.tool, "action": call.action,
            "args": self._audit_args(call.args), "args_hash": digest, "autonomy_level": level,
            "approval_id": str(call.approval_id) if call.approval_id else None,
        }
        if self.state.state.kill_switch:
            await self._deny(record, None, KillSwitchEngaged(
                "The kill switch is on: no tool call runs until the hub turns it off.",
                reason=self.state.state.kill_switch_reason))
        cls = self.policy.classify(call.tool, call.action, call.args)
        decision = self.policy.decide(cls.risk, level)
        record.update(risk_class=cls.risk.value, reasons=list(cls.reasons), decision=decision.value)
        try:
            self._precheck(call, cls)
        except DomainError as exc:
            await self._deny(record, cls, exc)

        if decision is Decision.EXECUTE:
            await self._limit(record, cls, call, digest)
            return await self._run(record, call, cls, digest, approver=None)

        if call.approval_id is None:
            await self._limit(record, cls, call, digest)
            return await self._request_approval(record, call, cls, digest)
        return await self._run_approved(record, call, cls, digest)

    # --- steps ---------------------------------------------------------------------------------------------

    def _precheck(self, call: ToolCall, cls: Classification) -> None:
        """Refuse early what could never run, so nobody approves it in vain."""
        headers = cls.spec.http.headers if cls.spec and cls.spec.http else {}
        misplaced = self.policy.misplaced_refs(cls.spec, call.args)
        if misplaced:
            raise SecretNotAllowed(
                f"{call.tool}.{call.action} takes SECRET_REF only in "
                f"{', '.join(cls.spec.secret_args) if cls.spec and cls.spec.secret_args else 'no argument'}; "
                f"found it in: {', '.join(misplaced[:10])}.", at=misplaced[:10])
        if self.secrets is not None:
            self.secrets.refresh()
            self.secrets.check_refs(call.tool, call.args, headers)
        elif "SECRET_REF(" in canonical_json([call.args, headers]):
            raise Unprocessable("This tenant has no secret store configured, so SECRET_REF cannot be used.")
        if cls.spec is not None:
            if cls.spec.executor not in self.executors:
                raise NoExecutor(f"No executor '{cls.spec.executor}' on this tenant.")
            if cls.spec.http is not None:
                missing = [n for n in _PATH_ARG.findall(cls.spec.http.path) if n not in call.args]
                if missing:
                    raise Unprocessable(f"Missing argument(s) for {call.tool}.{call.action}: {', '.join(missing)}.")

    async def _limit(self, record: dict[str, Any], cls: Classification, call: ToolCall, digest: str) -> None:
        try:
            self.limiter.check(call.tool, digest, self.policy.limits_for(call.tool))
        except DomainError as exc:
            await self._deny(record, cls, exc)

    async def _request_approval(
        self, record: dict[str, Any], call: ToolCall, cls: Classification, digest: str
    ) -> ToolCallOutcome:
        if self.approvals is None:
            await self._deny(record, cls, HubUnavailable("No approval authority is configured on this tenant."))
        assert self.approvals is not None
        body = ApprovalCreate(
            tool=call.tool, action=call.action, risk_class=cls.risk.value, args_hash=digest,
            args_preview=record["args"], reasons=[*cls.reasons, *([call.reason] if call.reason else [])][:20],
            ttl_seconds=self.policy.approval_ttl(cls.risk),
        )
        try:
            approval = await self.approvals.request(body)
        except DomainError as exc:
            await self._deny(record, cls, exc)
        entry = await self.audit.append(**{**record, "outcome": "pending_approval", "approval_id": str(approval.id)})
        return self._outcome("pending_approval", call, cls, digest, entry, approval=approval)

    async def _run_approved(
        self, record: dict[str, Any], call: ToolCall, cls: Classification, digest: str
    ) -> ToolCallOutcome:
        assert call.approval_id is not None
        if self.approvals is None:
            await self._deny(record, cls, HubUnavailable("No approval authority is configured on this tenant."))
        assert self.approvals is not None
        approval_id = call.approval_id
        try:
            async with self._approval_lock:
                # Single use, checked here first (a hub that misbehaves cannot make us run a call twice).
                if self.state.approval_used(str(approval_id)) or approval_id in self._inflight:
                    raise ApprovalUsed("This approval was already used; ask for a new one.")
                self._inflight.add(approval_id)
            try:
                approval = await self.approvals.get(approval_id)
                self._check_approval(approval, call, digest)
                if approval.status is ApprovalStatus.PENDING:
                    entry = {"seq": self.audit.seq}  # polling a pending approval is not a new decision
                    return self._outcome("pending_approval", call, cls, digest, entry, approval=approval)
                self.limiter.check(call.tool, digest, self.policy.limits_for(call.tool))
                self.state.mark_approval_used(str(approval_id))
                approval = await self.approvals.consume(approval_id, digest)
            finally:
                self._inflight.discard(approval_id)
        except DomainError as exc:
            await self._deny(record, cls, exc)
        return await self._run(record, call, cls, digest, approver=approval.decided_by)

    def _check_approval(self, approval: Approval, call: ToolCall, digest: str) -> None:
        if approval.tool != call.tool or approval.action != call.action or approval.args_hash != digest:
            raise ApprovalMismatch(
                "This approval was granted for a different call: it is bound to the exact tool, action and "
                "arguments it was asked for.")
        if approval.status is ApprovalStatus.REJECTED:
            raise ApprovalRejected("The approver rejected this call.", note=approval.decision_note)
        if approval.status is ApprovalStatus.CONSUMED:
            raise ApprovalUsed("This approval was already used; ask for a new one.")
        if approval.status is ApprovalStatus.EXPIRED or approval.expires_at <= self._clock():
            raise ApprovalExpired("The approval expired; ask for a new one.")

    async def _run(
        self, record: dict[str, Any], call: ToolCall, cls: Classification, digest: str, approver: str | None
    ) -> ToolCallOutcome:
        if cls.spec is None:  # an approved unknown call: nothing knows how to run it
            await self._deny(record, cls, NoExecutor(f"{call.tool}.{call.action} is not in the policy."))
        assert cls.spec is not None
        executor = self.executors[cls.spec.executor]
        headers = dict(cls.spec.http.headers) if cls.spec.http else {}
        if self.secrets is not None:
            args = self.secrets.substitute(call.tool, call.args)
            headers = self.secrets.substitute(call.tool, headers)
        else:
            args = call.args
        try:
            result = await executor.run(call.tool, call.action, cls.spec, args, headers)
        except Exception as exc:  # a bug in an executor is an outcome too: audited, then the usual 4xx/5xx
            error = exc.type if isinstance(exc, DomainError) else "internal-error"
            await self.audit.append(**{**record, "outcome": "failed", "approver": approver, "error": error})
            raise
        del args, headers  # the substituted values go no further than the executor
        entry = await self.audit.append(
            **{**record, "outcome": "executed", "approver": approver, "result": result.summary()})
        return self._outcome("executed", call, cls, digest, entry, result=result)

    async def _deny(self, record: dict[str, Any], cls: Classification | None, exc: DomainError) -> None:
        await self.audit.append(**{**record, "outcome": "denied", "error": exc.type, "detail": exc.detail})
        raise exc

    # --- shaping -------------------------------------------------------------------------------------------

    def _audit_args(self, args: dict[str, Any]) -> dict[str, Any]:
        scrubbed = self.secrets.scrub(args) if self.secrets is not None else args
        text = canonical_json(scrubbed)
        return scrubbed if len(text) <= AUDIT_ARGS_MAX else {"_truncated": text[:AUDIT_ARGS_MAX]}

    def _outcome(
        self, status: str, call: ToolCall, cls: Classification, digest: str, entry: dict[str, Any],
        *, approval: Approval | None = None, result: ToolResult | None = None,
    ) -> ToolCallOutcome:
        output = None
        if result is not None:
            body = self.secrets.scrub(result.body) if self.secrets is not None else result.body
            output = ToolOutput(status_code=result.status_code, content_type=result.content_type, body=body,
                                truncated=result.truncated)
        return ToolCallOutcome(
            status=status, tool=call.tool, action=call.action, risk_class=cls.risk,  # type: ignore[arg-type]
            decision=self.policy.decide(cls.risk, self.state.state.autonomy_level), reasons=list(cls.reasons),
            args_hash=digest, audit_seq=entry["seq"], approval_id=approval.id if approval else None,
            approval_expires_at=approval.expires_at if approval else None, result=output,
        )
