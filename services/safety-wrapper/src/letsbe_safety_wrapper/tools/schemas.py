from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from letsbe_contracts.validation import RequestModel
from letsbe_safety_wrapper.tools.policy import ActionName, Decision, RiskClass, ToolName


class ToolCall(RequestModel):
    model_config = ConfigDict(extra="forbid")

    tool: ToolName
    action: Annotated[str, StringConstraints(min_length=1, max_length=80, pattern=r"^[a-z][a-z0-9_.]*$")]
    args: dict[str, Any] = Field(default_factory=dict, description="May hold SECRET_REF(name) placeholders.")
    approval_id: uuid.UUID | None = Field(
        default=None, description="Repeat a gated call with the approval the hub gave it, to run it (once)."
    )
    reason: Annotated[str, StringConstraints(max_length=500)] | None = Field(
        default=None, description="Why the agent wants this; shown to the approver."
    )


class ToolOutput(BaseModel):
    status_code: int
    content_type: str | None
    body: Any
    truncated: bool


class ToolCallOutcome(BaseModel):
    status: Literal["executed", "pending_approval"]
    tool: str
    action: str
    risk_class: RiskClass
    decision: Decision
    reasons: list[str]
    args_hash: str
    audit_seq: int
    approval_id: uuid.UUID | None = None
    approval_expires_at: datetime | None = None
    result: ToolOutput | None = None


class ActionInfo(BaseModel):
    tool: str
    action: ActionName
    risk_class: RiskClass
    decision: Decision
    description: str


class ToolsStatus(BaseModel):
    autonomy_level: int
    autonomy_name: str
    kill_switch: bool
    kill_switch_reason: str | None
    audit_entries: int
    audit_head: str
    actions: list[ActionInfo]


__all__ = ["ActionInfo", "ToolCall", "ToolCallOutcome", "ToolName", "ToolOutput", "ToolsStatus"]
