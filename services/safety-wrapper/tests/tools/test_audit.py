"""The audit chain verifies when intact and names the first broken line when anything was tampered with."""

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from letsbe_safety_wrapper.tools.audit import GENESIS, AuditLog, verify


async def _log_with(path: Path, n: int) -> AuditLog:
    log = AuditLog(path)
    for i in range(n):
        await log.append(event="tool_call", tool="ghost", action="posts.list", n=i, decision="EXECUTE")
    return log


async def test_intact_chain_verifies_and_reports_its_head(tmp_path):
    log = await _log_with(tmp_path / "audit.jsonl", 5)
    result = verify(log.path)
    assert result.ok and result.entries == 5 and result.head == log.head != GENESIS


async def test_chain_continues_across_restarts(tmp_path):
    path = tmp_path / "audit.jsonl"
    first = await _log_with(path, 3)
    second = AuditLog(path)  # a restarted wrapper
    assert (second.seq, second.head) == (3, first.head)
    await second.append(event="kill_switch", engaged=True)
    assert verify(path).ok and verify(path).entries == 4


def _edit(path: Path, fn) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(fn(lines)))


def _change_field(lines):
    entry = json.loads(lines[2])
    entry["decision"] = "GATE_FOR_APPROVAL"
    lines[2] = json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n"
    return lines


def _change_and_rehash(lines):
    # A forger who recomputes this entry's hash still breaks the link to the next entry.
    from letsbe_safety_wrapper.tools.audit import entry_hash

    entry = json.loads(lines[2])
    entry["approver"] = "someone-else"
    entry["hash"] = entry_hash(entry)
    lines[2] = json.dumps(entry) + "\n"
    return lines


TAMPERING = [
    ("a field changed", _change_field, 3),
    ("a field changed and rehashed", _change_and_rehash, 4),
    ("a line removed", lambda ls: ls[:2] + ls[3:], 3),
    ("two lines swapped", lambda ls: [ls[0], ls[2], ls[1], *ls[3:]], 2),
    ("a line duplicated", lambda ls: [*ls[:3], ls[2], *ls[3:]], 4),
    ("garbage inserted", lambda ls: [ls[0], "{not json\n", *ls[1:]], 2),
    ("the first line removed", lambda ls: ls[1:], 1),
]


@pytest.mark.parametrize(("what", "tamper", "broken_line"), TAMPERING, ids=[t[0] for t in TAMPERING])
async def test_tampering_is_detected_at_the_first_broken_line(tmp_path, what, tamper, broken_line):
    path = tmp_path / "audit.jsonl"
    await _log_with(path, 6)
    _edit(path, tamper)
    result = verify(path)
    assert not result.ok
    assert result.line == broken_line


async def test_verify_cli_exit_codes(tmp_path):
    path = tmp_path / "audit.jsonl"
    await _log_with(path, 3)
    cmd = [sys.executable, "-m", "letsbe_safety_wrapper.tools.audit", "verify", str(path)]
    ok = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and "ok: 3 entries" in ok.stdout
    _edit(path, _change_field)
    bad = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True, check=False)
    assert bad.returncode == 1 and "BROKEN at line 3" in bad.stdout


async def test_wrapper_refuses_to_continue_a_log_whose_last_entry_was_altered(tmp_path):
    path = tmp_path / "audit.jsonl"
    await _log_with(path, 2)
    _edit(path, lambda ls: [ls[0], ls[1].replace("posts.list", "posts.delete")])
    with pytest.raises(ValueError, match="does not match its hash"):
        AuditLog(path)
