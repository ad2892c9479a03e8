"""What the hub sets and a restart must not undo: the autonomy level, the kill switch, used approvals."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path


@dataclass
class ToolsState:
    autonomy_level: int
    kill_switch: bool = False
    kill_switch_reason: str | None = None
    changed_at: str | None = None
    used_approvals: list[str] = field(default_factory=list)


class StateFile:
    """A small JSON file replaced atomically (write temp, fsync, rename) on every change."""

    def __init__(self, path: Path, default_autonomy_level: int):
        self.path = Path(path)
        if self.path.exists():
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            self.state = ToolsState(**raw)
        else:
            self.state = ToolsState(autonomy_level=default_autonomy_level)
        self._used = set(self.state.used_approvals)

    def set_autonomy(self, level: int) -> None:
        self.state.autonomy_level = level
        self._save()

    def set_kill_switch(self, engaged: bool, reason: str | None) -> None:
        self.state.kill_switch = engaged
        self.state.kill_switch_reason = reason if engaged else None
        self._save()

    def approval_used(self, approval_id: str) -> bool:
        return approval_id in self._used

    def mark_approval_used(self, approval_id: str) -> None:
        """Recorded before the hub is told and before the tool runs: a crash in between leaves it used."""
        self._used.add(approval_id)
        self.state.used_approvals.append(approval_id)
        # Approvals expire within days; keep the most recent ones only, the hub refuses older ones anyway.
        if len(self.state.used_approvals) > 10_000:
            dropped = self.state.used_approvals[:-10_000]
            self.state.used_approvals = self.state.used_approvals[-10_000:]
            self._used.difference_update(dropped)
        self._save()

    def _save(self) -> None:
        self.state.changed_at = datetime.now(UTC).isoformat()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".state-")
        try:
            os.write(fd, json.dumps(asdict(self.state)).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
