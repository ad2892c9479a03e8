"""Append-only, hash-chained audit log of every tool-call decision (JSON lines).

Each line is one entry ``{"seq": n, "ts": ..., "prev": <hash of line n-1>, ..., "hash": <sha256>}`` where ``hash``
is the SHA-256 of the canonical JSON of the entry without ``hash``. Changing, removing, inserting or reordering
any line breaks the chain at that line; ``verify`` says where.

    python -m letsbe_safety_wrapper.tools.audit verify /var/lib/letsbe/safety-wrapper/audit.jsonl

(Cutting lines off the end leaves a valid shorter chain: the head hash the wrapper reports — ``head`` — is what
an outside observer compares against.)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from letsbe_safety_wrapper.tools.policy import canonical_json

GENESIS = "0" * 64


def entry_hash(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    entries: int
    head: str
    error: str | None = None
    line: int | None = None  # 1-based line of the first broken entry


def verify(path: Path) -> VerifyResult:
    prev, count = GENESIS, 0
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                return VerifyResult(False, count, prev, "empty line", lineno)
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                return VerifyResult(False, count, prev, "not valid JSON", lineno)
            if not isinstance(entry, dict):
                return VerifyResult(False, count, prev, "not a JSON object", lineno)
            if entry.get("seq") != count + 1:
                return VerifyResult(False, count, prev, f"sequence {entry.get('seq')!r}, expected {count + 1}", lineno)
            if entry.get("prev") != prev:
                return VerifyResult(False, count, prev, "does not chain to the previous entry", lineno)
            if entry.get("hash") != entry_hash(entry):
                return VerifyResult(False, count, prev, "content does not match its hash", lineno)
            prev, count = entry["hash"], count + 1
    return VerifyResult(True, count, prev)


class AuditLog:
    """One writer per file (the wrapper process). Appends are serialised and fsynced before the call proceeds."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = asyncio.Lock()
        self.seq, self.head = self._tail()

    def _tail(self) -> tuple[int, str]:
        """Continue the chain after the last line (only the last entry is read; ``verify`` checks the whole)."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return 0, GENESIS
        with open(self.path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            block = min(size, 64 * 1024)
            while True:
                fh.seek(size - block)
                lines = fh.read(block).rstrip(b"\n").split(b"\n")
                if len(lines) > 1 or block == size:
                    break
                block = min(size, block * 2)
        last = json.loads(lines[-1])
        if last.get("hash") != entry_hash(last):
            raise ValueError(f"{self.path}: the last audit entry does not match its hash; run verify")
        return int(last["seq"]), str(last["hash"])

    async def append(self, **fields: Any) -> dict[str, Any]:
        async with self._lock:
            entry: dict[str, Any] = {
                "seq": self.seq + 1,
                "ts": datetime.now(UTC).isoformat(timespec="microseconds"),
                "prev": self.head,
                **fields,
            }
            entry["hash"] = entry_hash(entry)
            line = (canonical_json(entry) + "\n").encode()
            await asyncio.to_thread(self._write, line)
            self.seq, self.head = entry["seq"], entry["hash"]
            return entry

    def _write(self, line: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "verify":
        print("usage: python -m letsbe_safety_wrapper.tools.audit verify <file>", file=sys.stderr)
        return 2
    path = Path(argv[1])
    if not path.exists():
        print(f"{path}: no such file", file=sys.stderr)
        return 2
    result = verify(path)
    if result.ok:
        print(f"ok: {result.entries} entries, head {result.head}")
        return 0
    print(f"BROKEN at line {result.line}: {result.error} ({result.entries} entries before it verify)")
    return 1


if __name__ == "__main__":
    sys.exit(main())
