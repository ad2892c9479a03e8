"""Every status column changes only through ``letsbe_platform.state`` (one declared machine per column).

Read from the AST of every service's code: an assignment to some row's ``.status`` (or ``setattr(row, "status",
…)``), an SQL ``UPDATE`` that sets ``status`` (``update(...).values(status=...)``, a dict with a "status" or a
``Model.status`` key, ``**{"status": …}``), or SQL text with ``SET status`` is a direct write. Inserting a new row in
its first state is not. No exceptions: every context's status columns have their machine.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SQL_SET_STATUS = re.compile(r"\bSET\s+(\w+\s*=.*,\s*)?\"?status\"?\s*=", re.IGNORECASE | re.DOTALL)


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


def _is_status_key(key: ast.expr | None) -> bool:
    return (isinstance(key, ast.Constant) and key.value == "status") or (
        isinstance(key, ast.Attribute) and key.attr == "status"
    )


def _sets_status(call: ast.Call) -> bool:
    dicts = [a for a in call.args if isinstance(a, ast.Dict)]
    dicts += [k.value for k in call.keywords if k.arg is None and isinstance(k.value, ast.Dict)]  # **{"status": …}
    return any(k.arg == "status" for k in call.keywords) or any(_is_status_key(k) for d in dicts for k in d.keys)


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
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "setattr"
            and len(node.args) > 1
            and _is_status_key(node.args[1])
        ):
            found.append(f"{node.lineno}: assigns .status")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL_SET_STATUS.search(node.value):
            found.append(f"{node.lineno}: SQL SET status")
    return sorted(found, key=lambda f: int(f.split(":")[0]))


def test_no_service_writes_a_status_column_but_through_the_state_machine():
    writes = {str(p.relative_to(ROOT)): direct_writes(p.read_text()) for p in ROOT.glob("services/*/src/**/*.py")}
    offenders = [f"{path}:{w}" for path, found in sorted(writes.items()) for w in found]
    assert not offenders, "status written outside letsbe_platform.state:\n" + "\n".join(offenders)


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
        "stmt.values(status='X')\n"
        "update(T).values({T.status: 'X'})\n"
        "update(T).values(**{'status': 'X'})\n"
        "setattr(row, 'status', 'X')\n"
        "text('UPDATE t SET status = :s WHERE id = :id')\n"
        "'UPDATE t SET locked_until = NULL, \"status\" = $1'\n"
        "text(\"SELECT 1 FROM t WHERE status = 'PENDING'\")\n"
    )
    assert direct_writes(sample) == [
        "1: assigns .status",
        "2: assigns .status",
        "3: UPDATE … SET status",
        "4: UPDATE … SET status",
        "9: UPDATE … SET status",
        "10: UPDATE … SET status",
        "11: UPDATE … SET status",
        "12: assigns .status",
        "13: SQL SET status",
        "14: SQL SET status",
    ]
