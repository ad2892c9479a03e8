"""The command journal: a command's id is on disk before it runs, so a redelivered command is recognised.

States: ``received`` (written before the ack; removed again if the ack fails, so a redelivery may run it),
``running`` (the hub said run: from here on it is never run a second time), ``done`` (with its outcome).
Handlers may keep data in the entry while they run (the update handler records the previous container there, so
a restarted agent can still roll back).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from letsbe_agent.files import create_json_exclusive, read_json, write_json


class CommandJournal:
    def __init__(self, directory: Path, *, keep_days: float = 30):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.keep_seconds = keep_days * 86400

    def _path(self, command_id: uuid.UUID) -> Path:
        return self.dir / f"{command_id}.json"

    def get(self, command_id: uuid.UUID) -> dict[str, Any] | None:
        return read_json(self._path(command_id))

    def begin(self, command_id: uuid.UUID, command: dict[str, Any]) -> bool:
        """False if the command was journaled before (a redelivery)."""
        return create_json_exclusive(
            self._path(command_id), {"state": "received", "command": command, "data": {}, "at": time.time()}
        )

    def forget(self, command_id: uuid.UUID) -> None:
        self._path(command_id).unlink(missing_ok=True)

    def _update(self, command_id: uuid.UUID, **changes: Any) -> dict[str, Any]:
        entry = self.get(command_id)
        if entry is None:
            raise KeyError(command_id)
        entry.update(changes)
        write_json(self._path(command_id), entry)
        return entry

    def running(self, command_id: uuid.UUID) -> None:
        self._update(command_id, state="running", started=time.time())

    def record(self, command_id: uuid.UUID, **data: Any) -> None:
        entry = self.get(command_id)
        if entry is None:
            raise KeyError(command_id)
        self._update(command_id, data={**entry.get("data", {}), **data})

    def done(self, command_id: uuid.UUID, outcome: dict[str, Any]) -> None:
        self._update(command_id, state="done", outcome=outcome, finished=time.time())

    def interrupted(self) -> list[tuple[uuid.UUID, dict[str, Any]]]:
        """Commands that were running when the agent stopped."""
        out = []
        for p in self.dir.glob("*.json"):
            entry = read_json(p)
            if entry and entry.get("state") == "running":
                out.append((uuid.UUID(p.stem), entry))
        return out

    def prune(self) -> None:
        cutoff = time.time() - self.keep_seconds
        for p in self.dir.glob("*.json"):
            entry = read_json(p)
            if entry and entry.get("state") == "done" and entry.get("finished", 0) < cutoff:
                p.unlink(missing_ok=True)
