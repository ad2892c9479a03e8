"""Every status column changes only through ``letsbe_platform.state`` (one declared machine per column).

Read from the AST of every service's code: an assignment to some row's ``.status``, or an SQL ``UPDATE`` that sets
``status`` (``update(...).values(status=...)``, or a dict with a "status" key), is a direct write. Inserting a new
row in its first state is not. The contexts listed in NOT_YET still write their status columns by hand; the list
may only shrink.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOT_YET = {
    "services/hub-api/src/letsbe_hub/approvals/repository.py",
    "services/monitor/src/letsbe_monitor/alerts/repository.py",
    "services/monitor/src/letsbe_monitor/notify/worker.py",
}


def _is_insert(call: ast.expr) -> bool:
    """``insert(...)…values(...)``: the statement the ``.values`` hangs on starts with an INSERT."""
    while isinstance(call, ast.Call | ast.Attribute):
        node = call.func if isinstance(call, ast.Call) else call.value
        if isinstance(call, ast.Call) and isinstance(node, ast.Name | ast.Attribute):
            name = node.id if isinstance(node, ast.Name) else node.attr
            if name in ("insert", "pg_insert"):
                return True
        call = node
    return False


def _sets_status(call: ast.Call) -> bool:
    if any(k.arg == "status" for k in call.keywords):
        return True
    return any(
        isinstance(a, ast.Dict) and any(isinstance(k, ast.Constant) and k.value == "status" for k in a.keys)
        for a in call.args
    )


def direct_writes(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        pairs: list[tuple[ast.expr, ast.expr | None]] = []
        if isinstance(node, ast.Assign):
            for tgt in node.targets:
                if isinstance(tgt, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    pairs += zip(tgt.elts, node.value.elts, strict=False)
                else:
                    pairs.append((tgt, node.value))
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            pairs = [(node.target, node.value)]
        for t, value in pairs:
            # Not writes: ``self.status = …`` (a plain object's attribute, e.g. an error's HTTP status), and
            # ``x.status = row.status`` (a copy of what the machine just wrote, kept in a detached object)
            if (
                isinstance(t, ast.Attribute)
                and t.attr == "status"
                and not (isinstance(t.value, ast.Name) and t.value.id == "self")
                and not (isinstance(value, ast.Attribute) and value.attr == "status")
            ):
                found.append(f"{node.lineno}: assigns .status")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "values"
            and _sets_status(node)
            and not _is_insert(node.func.value)
        ):
            found.append(f"{node.lineno}: UPDATE … SET status")  # noqa: S608 (a message, not SQL)
    return found


def test_no_service_writes_a_status_column_but_through_the_state_machine():
    writes = {str(p.relative_to(ROOT)): direct_writes(p.read_text()) for p in ROOT.glob("services/*/src/**/*.py")}
    offenders = [f"{path}:{w}" for path, found in sorted(writes.items()) if path not in NOT_YET for w in found]
    assert not offenders, "status written outside letsbe_platform.state:\n" + "\n".join(offenders)
    moved = sorted(p for p in NOT_YET if not writes.get(p))
    assert not moved, f"no direct status write left in {moved}: take them off NOT_YET"


def test_the_check_sees_each_kind_of_direct_write():
    sample = (
        "row.status = 'X'\n"
        "a.status, a.error = 'FAILED', None\n"
        "update(T).where(T.id == 1).values(status='X')\n"
        "update(T).values({'status': 'X'})\n"
        "insert(T).values(status='NEW')\n"
        "pg_insert(T).values(id=1, status='NEW').on_conflict_do_nothing()\n"
        "self.status = 404\n"
        "step.status, step.attempt = row.status, row.attempt\n"
    )
    assert direct_writes(sample) == [
        "1: assigns .status",
        "2: assigns .status",
        "3: UPDATE … SET status",
        "4: UPDATE … SET status",
    ]
