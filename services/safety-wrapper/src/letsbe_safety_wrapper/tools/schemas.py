from __future__ import annotations

import json
import math
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from letsbe_contracts.validation import RequestModel
from letsbe_safety_wrapper.tools.errors import CallTooLarge, MalformedCall
from letsbe_safety_wrapper.tools.policy import ActionName, Decision, RiskClass, ToolName

# Bounds on what a call may carry. Every tool behind the wrapper is reached over JSON; beyond these a value means
# something different to the tool than to the rules (a float that overflowed, an integer JavaScript rounds).
MAX_CALL_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_STRING_CHARS = 256 * 1024
MAX_SAFE_INTEGER = 2**53 - 1  # what a JavaScript tool (Ghost, NocoDB, Activepieces) still holds exactly


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
    secret_args: list[str] = Field(
        default_factory=list, description="Where this action accepts SECRET_REF(name); anywhere else it is refused.")


class ToolsStatus(BaseModel):
    autonomy_level: int
    autonomy_name: str
    kill_switch: bool
    kill_switch_reason: str | None
    audit_entries: int
    audit_head: str
    actions: list[ActionInfo]


def _reject_constant(name: str) -> Any:
    raise MalformedCall(f"{name} is not a JSON number: send a finite number.")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or abs(value) > MAX_SAFE_INTEGER:
        raise MalformedCall(f"The number {text[:40]} is out of range (at most {MAX_SAFE_INTEGER} either way).")
    return value


def _int(text: str) -> int:
    if len(text.lstrip("-")) > 16 or abs(int(text)) > MAX_SAFE_INTEGER:
        raise MalformedCall(f"The number {text[:40]} is out of range (at most {MAX_SAFE_INTEGER} either way).")
    return int(text)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise MalformedCall("An object repeats a key: which one the tool would read is not defined.")
    return out


def _check_shape(value: Any) -> None:
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise MalformedCall(f"The call is nested deeper than {MAX_DEPTH} levels.")
        if isinstance(node, str):
            if len(node) > MAX_STRING_CHARS:
                raise MalformedCall(f"A string is longer than {MAX_STRING_CHARS} characters.")
        elif isinstance(node, dict):
            stack.extend((k, depth + 1) for k in node)
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def parse_call(raw: bytes, max_bytes: int = MAX_CALL_BYTES) -> ToolCall:
    """A tool call from the raw request body: strict JSON (no NaN or Infinity, finite and JavaScript-safe
    numbers, no repeated keys), bounded in size, depth and string length, then the ToolCall schema."""
    if len(raw) > max_bytes:
        raise CallTooLarge(f"The call is larger than {max_bytes} bytes.")
    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant, parse_float=_float, parse_int=_int,
                         object_pairs_hook=_object)
    except RecursionError as exc:
        raise MalformedCall(f"The call is nested deeper than {MAX_DEPTH} levels.") from exc
    except ValueError as exc:  # not UTF-8, not JSON, or an integer too long to parse
        raise MalformedCall("The body is not valid JSON.") from exc
    _check_shape(doc)
    try:
        return ToolCall.model_validate(doc)
    except ValidationError as exc:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors(include_url=False)][:20]
        raise MalformedCall("The call does not match the ToolCall schema.", errors=errors) from exc


__all__ = ["ActionInfo", "ToolCall", "ToolCallOutcome", "ToolName", "ToolOutput", "ToolsStatus"]
