"""The local token-usage ledger: the Secrets Proxy records, the reporting agent sends hourly buckets.

    ledger = UsageLedger(path)
    ledger.record(tokens_in=120, tokens_out=80, model="claude-sonnet")   # per proxied LLM call
    for report in ledger.pending():                                      # closed hours, sealed into reports
        send(report.wire())  ...  ledger.mark_sent(report.hour, report.sequence)

A closed hour's usage is sealed into a report with the next sequence number of that hour, in one SQLite
transaction; (tenant, hour, sequence) is the hub's idempotency key, so a report sent twice counts once, and usage
recorded for an hour after it was sealed (a late call) goes out as that hour's next sequence. SQLite in WAL mode:
the two agents (separate processes) may share the file.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS open_usage (
    hour TEXT NOT NULL, model TEXT NOT NULL,
    tokens_in INTEGER NOT NULL, tokens_out INTEGER NOT NULL, requests INTEGER NOT NULL,
    PRIMARY KEY (hour, model)
);
CREATE TABLE IF NOT EXISTS usage_reports (
    hour TEXT NOT NULL, sequence INTEGER NOT NULL, lines TEXT NOT NULL, sent_at TEXT,
    PRIMARY KEY (hour, sequence)
);
"""


@dataclass(frozen=True)
class UsageLine:
    model: str
    tokens_in: int
    tokens_out: int
    requests: int


@dataclass(frozen=True)
class PendingReport:
    hour: datetime
    sequence: int
    lines: tuple[UsageLine, ...]

    def wire(self) -> dict[str, Any]:
        """The body of POST /api/v1/tenant/usage."""
        return {
            "hour": self.hour.isoformat(),
            "sequence": self.sequence,
            "lines": [l.__dict__ for l in self.lines],  # noqa: E741
        }


def hour_of(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


class UsageLedger:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def record(
        self, tokens_in: int, tokens_out: int, model: str, at: datetime | None = None, requests: int = 1
    ) -> None:
        """``requests`` calls of ``model`` in the hour of ``at`` that used these tokens together (a batch summed
        by the caller is one synchronous commit instead of one per call)."""
        if tokens_in < 0 or tokens_out < 0 or requests < 1:
            raise ValueError("token counts are never negative, and a record is at least one call")
        hour = hour_of(at or datetime.now(UTC)).isoformat()
        with self._lock:
            self._db.execute(
                "INSERT INTO open_usage (hour, model, tokens_in, tokens_out, requests) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (hour, model) DO UPDATE SET tokens_in = tokens_in + excluded.tokens_in, "
                "tokens_out = tokens_out + excluded.tokens_out, requests = requests + excluded.requests",
                (hour, model[:120], tokens_in, tokens_out, requests),
            )

    def pending(self, now: datetime | None = None) -> list[PendingReport]:
        """Seal every closed hour's open usage into a report, then return all reports not yet sent."""
        current = hour_of(now or datetime.now(UTC)).isoformat()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                hours = [
                    r[0] for r in self._db.execute("SELECT DISTINCT hour FROM open_usage WHERE hour < ?", (current,))
                ]
                for hour in hours:
                    rows = self._db.execute(
                        "SELECT model, tokens_in, tokens_out, requests FROM open_usage WHERE hour = ? ORDER BY model",
                        (hour,),
                    ).fetchall()
                    (seq,) = self._db.execute(
                        "SELECT COALESCE(MAX(sequence) + 1, 0) FROM usage_reports WHERE hour = ?", (hour,)
                    ).fetchone()
                    lines = ";".join(f"{m}\t{i}\t{o}\t{n}" for m, i, o, n in rows)
                    self._db.execute(
                        "INSERT INTO usage_reports (hour, sequence, lines) VALUES (?, ?, ?)", (hour, seq, lines)
                    )
                    self._db.execute("DELETE FROM open_usage WHERE hour = ?", (hour,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            rows = self._db.execute(
                "SELECT hour, sequence, lines FROM usage_reports WHERE sent_at IS NULL ORDER BY hour, sequence"
            ).fetchall()
        return [PendingReport(datetime.fromisoformat(h), s, _lines(lines)) for h, s, lines in rows]

    def mark_sent(self, hour: datetime, sequence: int) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE usage_reports SET sent_at = ? WHERE hour = ? AND sequence = ?",
                (datetime.now(UTC).isoformat(), hour_of(hour).isoformat(), sequence),
            )

    def prune(self, older_than: timedelta = timedelta(days=35)) -> None:
        cutoff = (datetime.now(UTC) - older_than).isoformat()
        with self._lock:
            self._db.execute("DELETE FROM usage_reports WHERE sent_at IS NOT NULL AND hour < ?", (cutoff,))


def _lines(packed: str) -> tuple[UsageLine, ...]:
    out = []
    for part in packed.split(";"):
        model, i, o, n = part.split("\t")
        out.append(UsageLine(model, int(i), int(o), int(n)))
    return tuple(out)
