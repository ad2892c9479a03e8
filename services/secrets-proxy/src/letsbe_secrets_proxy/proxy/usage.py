"""Token usage in hourly buckets, kept until the agent runtime has reported them to the hub.

Interface (``record`` / ``pending`` / ``mark_sent``) as the agent runtime's ``letsbe_agent.usage.UsageLedger``
expects: a report is ``UsageReport(hour, sequence, lines)``; (tenant, hour, sequence) is the hub's idempotency
key, so a retried report is counted once, and usage recorded for an hour after its report went out is sent as the
next sequence of that hour.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from letsbe_contracts.agent import UsageLine, UsageReport

SAVE_EVERY_SECONDS = 5.0  # a crash loses at most this much usage; a file write per LLM call would cost latency


def hour_of(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


class UsageLedger:
    def __init__(self, path: Path | None = None):
        self.path = path
        self._lock = threading.Lock()
        # hour (ISO) → {"sequence": n, "lines": {model: [tokens_in, tokens_out, requests]}}
        self._buckets: dict[str, dict] = {}
        self._saved = 0.0
        if path is not None and path.exists():
            self._buckets = json.loads(path.read_text(encoding="utf-8"))

    def record(self, model: str, tokens_in: int, tokens_out: int, requests: int = 1,
               at: datetime | None = None) -> None:
        hour = hour_of(at or datetime.now(UTC)).isoformat()
        model = (model or "unknown")[:120]
        with self._lock:
            bucket = self._buckets.setdefault(hour, {"sequence": 0, "lines": {}})
            line = bucket["lines"].setdefault(model, [0, 0, 0])
            line[0] += max(0, int(tokens_in))
            line[1] += max(0, int(tokens_out))
            line[2] += max(0, int(requests))
            if time.monotonic() - self._saved >= SAVE_EVERY_SECONDS:
                self._save()

    def pending(self) -> list[UsageReport]:
        with self._lock:
            self._save()
            return [
                UsageReport(
                    hour=datetime.fromisoformat(hour),
                    sequence=bucket["sequence"],
                    lines=[UsageLine(model=m, tokens_in=v[0], tokens_out=v[1], requests=v[2])
                           for m, v in sorted(bucket["lines"].items())][:200],
                )
                for hour, bucket in sorted(self._buckets.items())
                if bucket["lines"]
            ]

    def mark_sent(self, report: UsageReport) -> None:
        """The hub accepted ``report``: forget what it carried; later usage of that hour is the next sequence."""
        hour = hour_of(report.hour).isoformat()
        with self._lock:
            bucket = self._buckets.get(hour)
            if bucket is None or bucket["sequence"] != report.sequence:
                return  # already marked (a retry)
            for line in report.lines:
                current = bucket["lines"].get(line.model)
                if current is None:
                    continue
                current[0] -= line.tokens_in
                current[1] -= line.tokens_out
                current[2] -= line.requests
                if current == [0, 0, 0] or min(current) < 0:
                    del bucket["lines"][line.model]
            bucket["sequence"] += 1
            # Forget buckets that are fully sent and a day old (usage is recorded at "now", never that late).
            horizon = (hour_of(datetime.now(UTC)) - timedelta(days=1)).isoformat()
            for h in [h for h, b in self._buckets.items() if not b["lines"] and h < horizon]:
                del self._buckets[h]
            self._save()

    def close(self) -> None:
        """On shutdown: nothing recorded is lost."""
        with self._lock:
            self._save()

    def _save(self) -> None:
        self._saved = time.monotonic()
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(self._buckets), encoding="utf-8")
        os.replace(tmp, self.path)
