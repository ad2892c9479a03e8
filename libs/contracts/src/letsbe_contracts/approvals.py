"""Approval requests (Safety Wrapper ⇄ hub, under /api/v1/tenant/approvals): request and response bodies.

An approval is bound to the SHA-256 of the canonical JSON of the exact call (tool, action, arguments as the agent
wrote them, with ``SECRET_REF(name)`` placeholders, never secret values). It expires, and it is used once:
``consume`` flips APPROVED → CONSUMED atomically on the hub, and only for the same hash.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from letsbe_contracts.validation import RequestModel


def canonical_json(value: Any) -> str:
    """One spelling per value: sorted keys, no whitespace, no NaN. Approvals are bound to its hash."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def call_hash(tool: str, action: str, args: dict[str, Any]) -> str:
    """The hash an approval is bound to: the Safety Wrapper computes it, and the hub checks it where the approved
    call reaches the hub itself (a tool added or removed by the IT agent)."""
    return hashlib.sha256(canonical_json({"tool": tool, "action": action, "args": args}).encode()).hexdigest()


ArgsHash = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
ToolName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,40}$")]
ActionName = Annotated[str, StringConstraints(min_length=1, max_length=80, pattern=r"^[a-z][a-z0-9_.]*$")]
GatedClass = Literal["GREEN", "YELLOW", "YELLOW_EXTERNAL", "RED", "CRITICAL_RED"]


class ApprovalStatus(StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    CONSUMED = "CONSUMED"


class ApprovalCreate(RequestModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    tool: ToolName
    action: ActionName
    risk_class: GatedClass
    args_hash: ArgsHash
    # What the approver reads: the arguments with secret values scrubbed, capped in size by the wrapper.
    args_preview: dict[str, Any] = {}
    reasons: Annotated[list[Annotated[str, StringConstraints(max_length=200)]], Field(max_length=20)] = []
    ttl_seconds: Annotated[int, Field(ge=30, le=7 * 86_400)]


class ApprovalConsume(RequestModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    args_hash: ArgsHash


class Approval(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    id: uuid.UUID
    tenant_id: uuid.UUID
    tool: str
    action: str
    risk_class: str
    args_hash: str
    args_preview: dict[str, Any] = {}
    reasons: list[str] = []
    status: ApprovalStatus
    requested_at: datetime
    expires_at: datetime
    decided_at: datetime | None = None
    decided_by: str | None = None
    decision_note: str | None = None
    consumed_at: datetime | None = None
