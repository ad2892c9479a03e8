"""Token usage, handed to the tenant's shared ledger (letsbe_agent.usage.UsageLedger) in batches.

The ledger is SQLite with a synchronous commit per record: doing that on the request path (or a thread hop per
request) would cost every LLM call. Calls are queued in memory and written once a second from a worker thread;
a crash loses at most that second, a clean shutdown nothing.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from letsbe_agent.usage import UsageLedger, hour_of
from letsbe_platform.logging import get_logger

log = get_logger(__name__)


class UsageRecorder:
    def __init__(self, ledger: UsageLedger | None, every_seconds: float = 1.0):
        self.ledger = ledger
        self.every_seconds = every_seconds
        self._queue: list[tuple[str, int, int, datetime]] = []
        self._stop = asyncio.Event()

    def add(self, model: str, tokens_in: object, tokens_out: object) -> None:
        if self.ledger is None:
            return
        try:
            entry = (model or "unknown", max(0, int(tokens_in or 0)), max(0, int(tokens_out or 0)), datetime.now(UTC))
        except (TypeError, ValueError):
            log.warning("upstream usage unreadable", model=model)
            return
        self._queue.append(entry)

    async def flush(self) -> None:
        batch, self._queue = self._queue, []
        if not batch or self.ledger is None:
            return
        try:
            await asyncio.to_thread(self._write, batch)
        finally:
            self._queue[:0] = batch  # what was not written (the batch is emptied as it is written) goes back

    def _write(self, batch: list[tuple[str, int, int, datetime]]) -> None:
        """One commit per model and hour, not one per call: a commit is synchronous (an fsync), and hundreds of them
        a second kept this thread and the one serving requests taking the interpreter from each other."""
        assert self.ledger is not None
        groups: dict[tuple[str, datetime], list[tuple[str, int, int, datetime]]] = {}
        for entry in batch:
            groups.setdefault((entry[0], hour_of(entry[3])), []).append(entry)
        pending = list(groups.items())
        while pending:
            (model, hour), entries = pending[0]
            self.ledger.record(
                tokens_in=sum(e[1] for e in entries),
                tokens_out=sum(e[2] for e in entries),
                model=model,
                at=hour,
                requests=len(entries),
            )
            pending.pop(0)
            batch[:] = [e for _, rest in pending for e in rest]

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=self.every_seconds)
            except TimeoutError:
                pass
            try:
                await self.flush()
            except Exception:
                log.exception("usage ledger write failed; will retry")
        await self.flush()

    def stop(self) -> None:
        self._stop.set()
