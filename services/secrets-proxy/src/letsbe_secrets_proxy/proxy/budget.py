"""How many bytes of bodies the proxy holds for redaction at once, whatever the number of calls.

A body is redacted whole (parsed, scanned, re-serialised: a few times its size in memory), so the cap on one body
bounds one call, and this budget bounds all of them together: a call whose body does not fit waits until earlier
ones are done (each body alone is capped below the budget, so every call fits eventually).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class ByteBudget:
    def __init__(self, total: int):
        self.total = total
        self.held = 0
        self._changed = asyncio.Condition()

    @asynccontextmanager
    async def hold(self, n: int) -> AsyncIterator[None]:
        n = min(n, self.total)
        async with self._changed:
            await self._changed.wait_for(lambda: self.held + n <= self.total)
            self.held += n
        try:
            yield
        finally:
            async with self._changed:
                self.held -= n
                self._changed.notify_all()
