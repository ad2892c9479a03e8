"""The tool policy: declarative data (``policy.json``, schema ``policy.schema.json``) and the classifier.

A call is ``(tool, action, args)``. Its risk class is the most severe of: the class of the action in the policy
(an unknown tool or action is RED: fail closed) and every escalation rule whose conditions match the arguments.
Rules can only raise a class, never lower it, so their order does not matter.

Rules compare *canonical* values, because tools do not care how a value was spelled: ``"3"``, ``3`` and ``3.0``
are one number, ``"true"`` is ``true``, full-width letters are letters (NFKC), and ``ignore_case`` folds case
where the tool does. A rule's path reaches into nested arguments: ``posts.*.status`` (every item),
``**.recipients`` (at any depth). Where a value could mean several things, a rule that raises the class takes the
reading that raises it (``in``), and a rule that raises unless a value is known-good (``not_in``) needs every
reading to be good: both err towards approval. The tenant's autonomy level then
decides, per class, EXECUTE or GATE_FOR_APPROVAL; CRITICAL_RED is gated at every level (the schema refuses a
policy that says otherwise).
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

# The canonical form and hash approvals are bound to: shared with the hub, which checks approved calls to itself.
from letsbe_contracts.approvals import call_hash, canonical_json  # noqa: F401 - re-exported


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
# A dotted path into the arguments; "*" is every key or item at that level, "**" any depth (zero or more levels).
ArgPath = Annotated[str, StringConstraints(pattern=r"^(\*|\*\*|[A-Za-z0-9_-]+)(\.(\*|\*\*|[A-Za-z0-9_-]+))*$",
                                           max_length=200)]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class ArgCondition(_Strict):
    """One test on the arguments. ``arg`` is a dotted path (``to``, ``message.recipients.0``, ``posts.*.status``,
    ``**.recipients``) or ``*`` for "any string anywhere in the arguments, keys included". Exactly one operator.
    ``not_in`` also holds when the path is absent (the tool then uses its default, which is what the rule fears)."""

    arg: ArgPath
    equals: Any = None
    in_: list[Any] | None = Field(default=None, alias="in")
    not_in: list[Any] | None = None
    regex: str | None = None
    exists: bool | None = None
    gt: float | None = None
    ignore_case: bool = False  # the tool treats these strings case-insensitively

    @model_validator(mode="after")
    def _one_operator(self) -> ArgCondition:
        ops = [self.equals is not None, self.in_ is not None, self.not_in is not None, self.regex is not None,
               self.exists is not None, self.gt is not None]
        if sum(ops) != 1:
            raise ValueError("an argument condition needs exactly one of equals, in, not_in, regex, exists, gt")
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
    # The argument paths where the agent may write SECRET_REF(name) (a password the call sets, a token in a
    # path). Anywhere else a SECRET_REF is refused: the agent cannot paste a credential into a post or an email.
    secret_args: list[ArgPath] = []


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


# --- the classifier ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Classification:
    risk: RiskClass
    known: bool  # the policy names this tool and action
    reasons: tuple[str, ...]
    spec: ActionSpec | None


def arg_values(args: Any, path: str) -> list[Any]:
    """Every value at ``path`` ("*": each key or item of a level; "**": any number of levels, zero included)."""
    nodes = [args]
    for part in path.split("."):
        nxt: list[Any] = []
        for node in nodes:
            if part == "**":
                nxt.extend(_descendants(node))
            elif part == "*":
                nxt.extend(node.values() if isinstance(node, dict) else node if isinstance(node, list) else ())
            elif isinstance(node, dict) and part in node:
                nxt.append(node[part])
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                nxt.append(node[int(part)])
        nodes = nxt
    return nodes


def _descendants(node: Any) -> Iterator[Any]:
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        if isinstance(n, dict):
            stack.extend(n.values())
        elif isinstance(n, list):
            stack.extend(n)


def string_leaves(value: Any) -> list[str]:
    out: list[str] = []
    for node in _descendants(value):
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, dict):
            out.extend(k for k in node if isinstance(k, str))
    return out


_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_BOOLS = {"true": True, "false": False}


def readings(value: Any, ignore_case: bool = False) -> frozenset[tuple[str, Any]]:
    """Every canonical value ``value`` may stand for: ``"3"`` → {3}; ``true`` → {true, 1}; ``"TRUE"`` → {true, 1};
    strings NFKC-normalised and stripped (and case-folded if asked); a list stands for each of its items."""
    if isinstance(value, bool):
        return frozenset({("bool", value), ("num", float(value))})
    if isinstance(value, int | float):
        number = float(value)
        return frozenset({("num", number)} | ({("bool", bool(number))} if number in (0.0, 1.0) else set()))
    if isinstance(value, str):
        text = unicodedata.normalize("NFKC", value).strip()
        if _NUMBER.fullmatch(text):
            number = float(text)
            if math.isfinite(number):
                return readings(number)
        if text.lower() in _BOOLS:
            return readings(_BOOLS[text.lower()])
        return frozenset({("str", text.casefold() if ignore_case else text)})
    if isinstance(value, list):
        return frozenset().union(*(readings(v, ignore_case) for v in value)) if value else frozenset({("list", 0)})
    if value is None:
        return frozenset({("null", None)})
    return frozenset({("json", canonical_json(value))})


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
            return any(pattern.search(unicodedata.normalize("NFKC", s)) for s in string_leaves(args))
        values = arg_values(args, cond.arg)
        if cond.exists is not None:
            return bool(values) == cond.exists
        if cond.not_in is not None:
            good = _operand(cond.not_in, cond.ignore_case)
            return not values or any(not readings(v, cond.ignore_case) <= good for v in values)
        if cond.regex is not None:
            pattern = self._regex[cond.regex]
            return any(pattern.search(unicodedata.normalize("NFKC", s)) for v in values for s in string_leaves(v))
        if cond.gt is not None:
            return any(kind == "num" and n > cond.gt for v in values for kind, n in readings(v))
        operand = _operand([cond.equals] if cond.equals is not None else cond.in_ or [], cond.ignore_case)
        return any(readings(v, cond.ignore_case) & operand for v in values)

    @staticmethod
    def misplaced_refs(spec: ActionSpec | None, args: dict[str, Any], marker: str = "SECRET_REF(") -> list[str]:
        """Where the arguments hold ``marker`` outside the slots ``spec.secret_args`` declares (keys never are)."""
        slots = [p.split(".") for p in (spec.secret_args if spec else [])]
        out: list[str] = []
        stack: list[tuple[tuple[str, ...], Any]] = [((), args)]
        while stack:
            path, node = stack.pop()
            if isinstance(node, dict):
                for k, v in node.items():
                    if marker in k:
                        out.append(".".join((*path, k)) + " (a key)")
                    stack.append(((*path, k), v))
            elif isinstance(node, list):
                stack.extend(((*path, str(i)), v) for i, v in enumerate(node))
            elif isinstance(node, str) and marker in node and not any(_within(s, path) for s in slots):
                out.append(".".join(path))
        return sorted(out)


def _within(pattern: list[str], path: tuple[str, ...]) -> bool:
    """Is ``path`` at or under a place ``pattern`` (with "*" and "**") names?"""
    if not pattern:
        return True
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_within(rest, path[i:]) for i in range(len(path) + 1))
    return bool(path) and head in ("*", path[0]) and _within(rest, path[1:])


def _operand(values: list[Any], ignore_case: bool) -> frozenset[tuple[str, Any]]:
    return frozenset().union(*(readings(v, ignore_case) for v in values)) if values else frozenset()


def policy_json_schema() -> dict[str, Any]:
    return PolicyDocument.model_json_schema(by_alias=True)


if __name__ == "__main__":  # regenerate policy.schema.json: python -m letsbe_safety_wrapper.tools.policy
    print(json.dumps(policy_json_schema(), indent=2, sort_keys=True))
