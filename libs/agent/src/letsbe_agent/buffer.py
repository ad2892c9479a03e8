"""What must not be lost (command results, backup reports) waits on disk until the hub has acknowledged it.

One file per item, named so that a sorted listing is the order of creation; an item with the same key replaces
the earlier one (a result re-reported after a redelivery is one item, not two). The hub de-duplicates on its side
too (command state, (tenant, date), (tenant, hour, sequence)), so a resend after a crash is harmless.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from letsbe_agent.client import HubClient, HubUnavailable, ReEnrolRequired, Rejected
from letsbe_agent.files import read_json, write_json
from letsbe_platform.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class Item:
    path: Path
    kind: str
    key: str
    method: str
    url: str
    body: Any


class DiskBuffer:
    def __init__(self, directory: Path):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.dir / "rejected").mkdir(exist_ok=True, mode=0o700)

    def put(self, kind: str, key: str, url: str, body: Any, method: str = "POST") -> None:
        tag = hashlib.sha256(f"{kind}:{key}".encode()).hexdigest()[:20]
        for old in self.dir.glob(f"*-{tag}.json"):
            old.unlink(missing_ok=True)
        name = f"{time.time_ns():020d}-{tag}.json"
        write_json(self.dir / name, {"kind": kind, "key": key, "method": method, "url": url, "body": body})

    def items(self) -> list[Item]:
        out = []
        for p in sorted(self.dir.glob("*.json")):
            data = read_json(p)
            if data is not None:
                out.append(Item(p, data["kind"], data["key"], data["method"], data["url"], data["body"]))
        return out

    def __len__(self) -> int:
        return sum(1 for _ in self.dir.glob("*.json"))

    async def flush(self, client: HubClient) -> int:
        """Send everything, oldest first; stops at the first sign the hub is away. Returns how many went out."""
        sent = 0
        for item in self.items():
            try:
                await client.request(item.method, item.url, json=item.body)
            except (HubUnavailable, ReEnrolRequired):
                raise
            except Rejected as exc:
                if exc.status == 409:  # already decided on the hub (e.g. the command's state): nothing to send
                    item.path.unlink(missing_ok=True)
                    continue
                log.error("hub rejected a buffered report; kept aside", kind=item.kind, key=item.key, status=exc.status)
                item.path.rename(self.dir / "rejected" / item.path.name)
                continue
            item.path.unlink(missing_ok=True)
            sent += 1
        return sent
