"""Fake state that survives a restart: a JSON file written after every request, read back on start.

The sandbox of `make run` keeps its fakes' state under ``.data/sandbox/state`` so a second start continues where
the first stopped (Hetzner's server ids, Cloudflare's records, Stripe's sessions), as the real providers would.
Tests construct the fakes without a state directory: then nothing is written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


class StateFile:
    def __init__(self, path: Path):
        self.path = path

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        return json.loads(self.path.read_text())

    def save(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, default=str))
        tmp.replace(self.path)  # a crash leaves the old state or the new one, never half a file


def saving_after_each_request(app: Any, save: Callable[[], None]) -> Any:
    """Wrap an ASGI app so ``save`` runs once each HTTP request was answered (every change goes through one)."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await app(scope, receive, send)
        finally:
            if scope["type"] == "http":
                save()

    return wrapped
