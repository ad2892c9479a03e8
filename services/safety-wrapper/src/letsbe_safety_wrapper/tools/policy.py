"""The tool policy: declarative data (``policy.json``, schema ``policy.schema.json``) and the classifier.

A call is ``(tool, action, args)``. Its risk class is the most severe of: the class of the action in the policy
(an unknown tool or action is RED: fail closed) and every escalation rule whose conditions match the arguments.
Rules can only raise a class, never lower it, so their order does not matter. The tenant's autonomy level then
decides, per class, EXECUTE or GATE_FOR_APPROVAL; CRITICAL_RED is gated at every level (the schema refuses a
policy that says otherwise).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator


class RiskClass(StrEnum):
    GREEN = "GREEN"  # read-only
    YELLOW = "YELLOW"  # a reversible change inside the tenant
    YELLOW_EXTERNAL = "YELLOW_EXTERNAL"  # reaches outside the tenant: email, webhooks, public posts
    RED = "RED"  # destructive or costly
    CRITICAL_RED = "CRITICAL_RED"  # irreversible: deleting data, credentials, the agent's own limits

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {c: i for i, c in enumerate(RiskClass)}


class Decision(StrEnum):
    EXECUTE = "EXECUTE"
    GATE_FOR_APPROVAL = "GATE_FOR_APPROVAL"


ToolName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,40}$")]
ActionName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){0,4}$", max_length=80)]
Glob = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_.*?]{1,80}$")]
ArgPath = Annotated[str, StringConstraints(pattern=r"^(\*|[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*)$", max_length=200)]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class ArgCondition(_Strict):
    """One test on the arguments. ``arg`` is a dotted path (``to``, ``message.recipients.0``) or ``*`` for
    "any string anywhere in the arguments". Exactly one operator."""

    arg: ArgPath
    equals: Any = None
    in_: list[Any] | None = Field(default=None, alias="in")
    regex: str | None = None
    exists: bool | None = None
    gt: float | None = None

    @model_validator(mode="after")
    def _one_operator(self) -> ArgCondition:
        ops = [self.equals is not None, self.in_ is not None, self.regex is not None, self.exists is not None,
               self.gt is not None]
        if sum(ops) != 1:
            raise ValueError("an argument condition needs exactly one of equals, in, regex, exists, gt")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"invalid regex {self.regex!r}: {exc}") from exc
        if self.arg == "*" and self.regex is None:
            raise ValueError("arg '*' (any string) only works with regex")
        return self


class HttpRoute(_Strict):
    """How the HTTP executor calls the tool on 127.0.0.1:<host_port>. ``{name}`` in the path is taken from the
    arguments; the other arguments go in the query (GET, DELETE) or as the JSON body. Header values may hold
    ``SECRET_REF(name)``: substituted only at execution, and only if that secret is bound to this tool."""

    method: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3,12}$")]
    path: Annotated[str, StringConstraints(pattern=r"^/[^\s?#]*$", max_length=300)]
    headers: dict[str, str] = {}


class ActionSpec(_Strict):
    risk: RiskClass = Field(alias="class")
    description: str = ""
    executor: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,30}$")] = "http"
    http: HttpRoute | None = None


class Limits(_Strict):
    per_minute: Annotated[int, Field(ge=1, le=10_000)]
    # The same call (tool, action and arguments) at most this many times within the window: an agent stuck in
    # a loop stops here instead of hammering a tool.
    loop_repeats: Annotated[int, Field(ge=1, le=1000)]
    loop_window_seconds: Annotated[float, Field(gt=0, le=86_400)]


class ToolPolicy(_Strict):
    description: str = ""
    limits: Limits | None = None
    actions: dict[ActionName, ActionSpec]


class Escalation(_Strict):
    tool: Glob = "*"
    action: Glob = "*"
    when: Annotated[list[ArgCondition], Field(min_length=1)]  # all must hold
    risk: RiskClass = Field(alias="class")
    reason: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class AutonomyLevel(_Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=40)]
    description: str = ""
    execute: list[RiskClass]  # classes run without approval; every other class is gated


class PolicyDocument(_Strict):
    version: Literal[1]
    default_autonomy_level: int
    autonomy_levels: dict[int, AutonomyLevel]
    # How long an approval request stays valid (to be decided and then used), per gated class.
    approval_ttl_seconds: dict[RiskClass, Annotated[int, Field(ge=30, le=7 * 86_400)]]
    default_limits: Limits
    tools: dict[ToolName, ToolPolicy]
    escalations: list[Escalation] = []

    @model_validator(mode="after")
    def _safe(self) -> PolicyDocument:
        if self.default_autonomy_level not in self.autonomy_levels:
            raise ValueError("default_autonomy_level must be one of autonomy_levels")
        for number, level in self.autonomy_levels.items():
            if RiskClass.CRITICAL_RED in level.execute:
                raise ValueError(f"autonomy level {number}: CRITICAL_RED must always be gated for approval")
        gated = {c for c in RiskClass if any(c not in lv.execute for lv in self.autonomy_levels.values())}
        missing = sorted(gated - set(self.approval_ttl_seconds))
        if missing:
            raise ValueError(f"approval_ttl_seconds needs a value for {missing}")
        for name, tool in self.tools.items():
            for action, spec in tool.actions.items():
                if spec.executor == "http" and spec.http is None:
                    raise ValueError(f"{name}.{action}: the http executor needs an http route")
        return self


# --- canonical form and hashing ------------------------------------------------------------------------------


def canonical_json(value: Any) -> str:
    """One spelling per value: sorted keys, no whitespace, no NaN. Approvals are bound to its hash."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def call_hash(tool: str, action: str, args: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json({"tool": tool, "action": action, "args": args}).encode()).hexdigest()


# --- the classifier ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Classification:
    risk: RiskClass
    known: bool  # the policy names this tool and action
    reasons: tuple[str, ...]
    spec: ActionSpec | None


_MISSING = object()


def _lookup(args: Any, path: str) -> Any:
    node = args
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def string_leaves(value: Any) -> list[str]:
    out: list[str] = []
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return out


class Policy:
    def __init__(self, doc: PolicyDocument):
        self.doc = doc
        self._regex: dict[str, re.Pattern[str]] = {}
        for esc in doc.escalations:
            for cond in esc.when:
                if cond.regex is not None:
                    self._regex[cond.regex] = re.compile(cond.regex)

    @classmethod
    def load(cls, path: Path | None = None) -> Policy:
        """The policy file at ``path``, or the one shipped with the package."""
        if path is None:
            raw = resources.files(__package__).joinpath("policy.json").read_text(encoding="utf-8")
        else:
            raw = Path(path).read_text(encoding="utf-8")
        return cls(PolicyDocument.model_validate_json(raw))

    @cached_property
    def levels(self) -> dict[int, AutonomyLevel]:
        return self.doc.autonomy_levels

    def classify(self, tool: str, action: str, args: dict[str, Any]) -> Classification:
        tool_policy = self.doc.tools.get(tool)
        spec = tool_policy.actions.get(action) if tool_policy else None
        if spec is None:
            risk, reasons = RiskClass.RED, [f"{tool}.{action} is not in the policy: unknown calls are RED"]
        else:
            risk, reasons = spec.risk, []
        for esc in self.doc.escalations:
            if not (fnmatch.fnmatchcase(tool, esc.tool) and fnmatch.fnmatchcase(action, esc.action)):
                continue
            if all(self._holds(cond, args) for cond in esc.when):
                reasons.append(esc.reason)
                if esc.risk.severity > risk.severity:
                    risk = esc.risk
        return Classification(risk=risk, known=spec is not None, reasons=tuple(reasons), spec=spec)

    def decide(self, risk: RiskClass, level: int) -> Decision:
        autonomy = self.levels.get(level)
        if autonomy is None or risk not in autonomy.execute:
            return Decision.GATE_FOR_APPROVAL
        return Decision.EXECUTE

    def limits_for(self, tool: str) -> Limits:
        tool_policy = self.doc.tools.get(tool)
        return (tool_policy.limits if tool_policy else None) or self.doc.default_limits

    def approval_ttl(self, risk: RiskClass) -> int:
        return self.doc.approval_ttl_seconds.get(risk, min(self.doc.approval_ttl_seconds.values()))

    def _holds(self, cond: ArgCondition, args: dict[str, Any]) -> bool:
        if cond.arg == "*":
            pattern = self._regex[cond.regex or ""]
            return any(pattern.search(s) for s in string_leaves(args))
        value = _lookup(args, cond.arg)
        if cond.exists is not None:
            return (value is not _MISSING) == cond.exists
        if value is _MISSING:
            return False
        if cond.equals is not None:
            return value == cond.equals
        if cond.in_ is not None:
            return value in cond.in_
        if cond.regex is not None:
            return isinstance(value, str) and self._regex[cond.regex].search(value) is not None
        if cond.gt is not None:
            return isinstance(value, int | float) and not isinstance(value, bool) and value > cond.gt
        return False


def policy_json_schema() -> dict[str, Any]:
    return PolicyDocument.model_json_schema(by_alias=True)


if __name__ == "__main__":  # regenerate policy.schema.json: python -m letsbe_safety_wrapper.tools.policy
    print(json.dumps(policy_json_schema(), indent=2, sort_keys=True))
