"""The allocation worker: one order-created in, one server-allocated (or order-failed, or a hold) out.

Decision, in one transaction:
  1. redelivery (the inbox has the event)                        → nothing
  2. the order already holds a server                            → emit server-allocated again (same server)
  3. an overflow attempt for the order is under way              → resume it (never a second server)
  4. an AVAILABLE pool server (SELECT … FOR UPDATE SKIP LOCKED)  → reserve it + inbox claim + server-allocated
  5. MANUAL                                                      → hold for an operator + inbox claim
  6. AUTO, no Hetzner configured                                 → order-failed (retryable) + inbox claim
  7. AUTO                                                        → record the overflow intent (name = per order and
                                                                   attempt), then outside the transaction:
     create-or-find the Hetzner server by that name, wait until running, wait for SSH, read the host key; then
     inventory row + intent READY + inbox claim + server-allocated in one transaction.
     A provider failure (after the client's retries) → intent FAILING → delete the server → intent FAILED +
     inbox claim + order-failed. A crash anywhere resumes from the intent on redelivery.

The worker never writes the order's status: the orders context reacts to the events.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from letsbe_contracts import (
    AutomationMode,
    FailureStage,
    OrderCreatedV1,
    OrderFailedV1,
    OrderSpec,
    load_catalog,
)
from letsbe_hub.config import ServerSettings
from letsbe_hub.db import inbox, outbox
from letsbe_hub.providers.base import Heartbeat, ServerAllocation, ServerAllocator
from letsbe_hub.providers.errors import ProviderError
from letsbe_hub.servers import repository as repo
from letsbe_hub.servers.models import OVERFLOW, InventoryStatus, OverflowServer, OverflowStatus
from letsbe_hub.servers.reachability import wait_for_host_key
from letsbe_hub.servers.service import emit_allocated, reserve
from letsbe_platform import state
from letsbe_platform.bus import Delivery
from letsbe_platform.db import unit_of_work
from letsbe_platform.logging import get_logger
from letsbe_platform.outbox import add_event, claim, handled
from letsbe_platform.waiting import Backoff

log = get_logger(__name__)
CREATING, FAILING = OverflowStatus.CREATING, OverflowStatus.FAILING

CONSUMER = "hub-allocate-on-order-created"
ALLOCATIONS = Counter("hub_server_allocations_total", "Outcomes of the allocation worker", ["outcome"])


class Outcome(StrEnum):
    DUPLICATE = "duplicate"
    EXISTING = "existing"
    POOL = "pool"
    HELD = "held"
    OVERFLOW = "overflow"
    FAILED = "failed"


@dataclass(frozen=True)
class _Attempt:
    name: str
    status: str
    error: str | None = None
    retryable: bool = True


def overflow_name(order_id: uuid.UUID, attempt: int) -> str:
    """The Hetzner server name of an attempt: unique per project, so it is our idempotency key at Hetzner."""
    return f"letsbe-{order_id}-{attempt}"


def throttled(beat: Callable[[], Awaitable[None]], every: float = 5.0) -> Heartbeat:
    """Tell JetStream we are still working at most every ``every`` seconds (long Hetzner waits)."""
    last = 0.0

    async def heartbeat() -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= every:
            last = now
            try:
                await beat()
            except Exception as exc:  # a lost heartbeat only risks a redelivery, which we handle
                log.warning("in_progress failed", error=repr(exc))

    return heartbeat


class Allocator:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: ServerSettings,
        overflow: ServerAllocator | None,
    ):
        self.sessions = sessions
        self.settings = settings
        self.overflow = overflow  # Hetzner Cloud when configured: any provider that allocates by API

    async def on_order_created(self, event: OrderCreatedV1, delivery: Delivery) -> None:
        await self.allocate(event.order, delivery.event_id, heartbeat=throttled(delivery.in_progress))

    async def allocate(self, order: OrderSpec, event_id: uuid.UUID, *, heartbeat: Heartbeat | None = None) -> Outcome:
        outcome, attempt = await self._decide(order, event_id)
        if attempt is not None:
            outcome = await self._overflow(order, event_id, attempt, heartbeat)
        ALLOCATIONS.labels(outcome.value).inc()
        log.info(
            "order allocation",
            order_id=str(order.order_id),
            event_id=str(event_id),
            outcome=outcome.value,
            tier=order.tier.value,
            region=order.region.value,
        )
        return outcome

    # --- the decision ----------------------------------------------------------------------------------------------

    async def _decide(self, order: OrderSpec, event_id: uuid.UUID) -> tuple[Outcome, _Attempt | None]:
        async with unit_of_work(self.sessions) as s:
            if await handled(s, inbox, CONSUMER, event_id):
                return Outcome.DUPLICATE, None
            held = await repo.server_for_order(s, order.order_id)
            server = None
            if held is None:
                intent = await repo.lock_overflow(s, order.order_id)
                if intent is not None and intent.status in (OverflowStatus.CREATING, OverflowStatus.FAILING):
                    intent.event_id = event_id  # this delivery carries the attempt on
                    return Outcome.OVERFLOW, _Attempt(intent.name, intent.status, intent.error, intent.retryable)
                server = await repo.lock_available_server(s, order.tier.value, order.region.value)
                if server is None and order.automation_mode is AutomationMode.AUTO and self.overflow is not None:
                    return Outcome.OVERFLOW, await self._new_attempt(s, order, event_id, intent)
            # Any other way, this delivery finishes the event here, in this transaction.
            if not await claim(s, inbox, CONSUMER, event_id):
                return Outcome.DUPLICATE, None  # a parallel delivery won; the row locks end with this tx
            if held is not None:
                await emit_allocated(s, order, held, cause=event_id)
                return Outcome.EXISTING, None
            if server is not None:
                await reserve(s, server, order.order_id)
                if order.automation_mode is AutomationMode.MANUAL:  # it may have been held by an earlier event
                    await repo.resolve_hold(s, order.order_id, server.id, "allocation-worker")
                await emit_allocated(s, order, server, cause=event_id)
                return Outcome.POOL, None
            reason = f"no AVAILABLE {order.tier.value} server in the {order.region.value} pool"
            if order.automation_mode is AutomationMode.MANUAL:
                await repo.hold(
                    s, order.order_id, order.tier.value, order.region.value, order.model_dump(mode="json"), reason
                )
                return Outcome.HELD, None
            await self._emit_failed(
                s, order, event_id, f"{reason} and Hetzner overflow is not configured", retryable=True
            )
            return Outcome.FAILED, None

    async def _new_attempt(
        self, s: AsyncSession, order: OrderSpec, event_id: uuid.UUID, intent: OverflowServer | None
    ) -> _Attempt:
        n = 1 if intent is None else intent.attempt + 1
        name = overflow_name(order.order_id, n)
        if intent is None:
            await repo.add_overflow(
                s,
                order_id=order.order_id,
                event_id=event_id,
                attempt=n,
                name=name,
                tier=order.tier.value,
                region=order.region.value,
                status=OverflowStatus.CREATING.value,
                retryable=True,
            )
        else:  # a retry after a failed attempt (or a released server): a fresh name, a fresh server
            fresh = {"event_id": event_id, "attempt": n, "name": name, "hetzner_id": None, "server_id": None}
            await state.transition(
                s, OVERFLOW, order.order_id, intent.status, CREATING, actor=CONSUMER, error=None, **fresh
            )
        return _Attempt(name, OverflowStatus.CREATING.value)

    # --- Hetzner overflow --------------------------------------------------------------------------------------------

    async def _overflow(
        self, order: OrderSpec, event_id: uuid.UUID, attempt: _Attempt, heartbeat: Heartbeat | None
    ) -> Outcome:
        assert self.overflow is not None
        if attempt.status == OverflowStatus.FAILING:
            return await self._give_up(
                order, event_id, attempt.name, attempt.error or "allocation failed", attempt.retryable
            )
        cfg = self.settings
        try:
            created = await self.overflow.allocate_server(
                order.tier,
                order.region,
                key=attempt.name,
                labels={"letsbe-order": str(order.order_id)},
                heartbeat=heartbeat,
                needs=load_catalog().needs(order.tools),  # what preflight will demand of the server
            )
            async with unit_of_work(self.sessions) as s:
                await repo.set_overflow(
                    s, order.order_id, attempt.name, [OverflowStatus.CREATING], hetzner_id=int(created.provider_ref)
                )
            fingerprint = await wait_for_host_key(
                str(created.ipv4),
                cfg.server_ssh_port,
                timeout=cfg.ssh_ready_timeout_seconds,
                backoff=Backoff(cfg.provider_poll_first_seconds, cfg.ssh_probe_seconds),
                provider=created.provider.value,
                heartbeat=heartbeat,
            )
        except ProviderError as exc:
            log.warning("overflow server failed", order_id=str(order.order_id), name=attempt.name, error=str(exc))
            async with unit_of_work(self.sessions) as s:
                moved = await _move_overflow(
                    s,
                    order.order_id,
                    attempt.name,
                    CREATING,
                    FAILING,
                    error=str(exc)[:4000],
                    retryable=exc.retryable,
                )
            if not moved:
                return await self._lost(order.order_id, attempt.name)
            return await self._give_up(order, event_id, attempt.name, str(exc), exc.retryable)

        async with unit_of_work(self.sessions) as s:
            claimed = await claim(s, inbox, CONSUMER, event_id)  # kept either way: this event is done with
            intent = await repo.lock_overflow(s, order.order_id)
            if claimed and intent is not None and intent.name == attempt.name and intent.status == CREATING:
                await self._record(s, order, event_id, created, fingerprint)
                return Outcome.OVERFLOW
        # Another delivery finished or failed the attempt, the sweep cleaned it up, or a new attempt began.
        return await self._lost(order.order_id, attempt.name)

    async def _record(
        self, s: AsyncSession, order: OrderSpec, event_id: uuid.UUID, created: ServerAllocation, fingerprint: str
    ) -> None:
        """The new server into the inventory, reserved for the order; the intent READY; server-allocated."""
        cfg = self.settings
        server = await repo.add_server(
            s,
            provider=created.provider.value,
            provider_ref=created.provider_ref,
            name=created.name,
            tier=order.tier.value,
            region=order.region.value,
            ipv4=str(created.ipv4),
            ipv6=str(created.ipv6) if created.ipv6 else None,
            ssh_port=cfg.server_ssh_port,
            ssh_user=cfg.server_ssh_user,
            host_key_fingerprint=fingerprint,
            status=InventoryStatus.AVAILABLE,
        )
        await reserve(s, server, order.order_id)
        await state.transition(
            s, OVERFLOW, order.order_id, CREATING, OverflowStatus.READY, actor=CONSUMER, server_id=server.id
        )
        await emit_allocated(s, order, server, cause=event_id)

    async def _lost(self, order_id: uuid.UUID, name: str) -> Outcome:
        """This delivery's attempt ``name`` was moved on by someone else. Unless it is READY or still CREATING, or a
        server of that name is in the inventory (another delivery finished the attempt with this very server: the name
        finds it at Hetzner), the server this delivery may have made is no one's: delete it, else it would run, and
        cost, forever. By name, so it is idempotent."""
        assert self.overflow is not None
        async with unit_of_work(self.sessions) as s:
            intent = await repo.lock_overflow(s, order_id)
            in_use = intent is not None and intent.name == name and intent.status in (OverflowStatus.READY, CREATING)
            in_use = in_use or await repo.named_in_inventory(s, self.overflow.name.value, name)
        if not in_use and await self.overflow.deallocate_key(name):
            log.warning("deleted the server of an attempt moved on meanwhile", order_id=str(order_id), name=name)
        return Outcome.DUPLICATE

    async def _give_up(self, order: OrderSpec, event_id: uuid.UUID, name: str, reason: str, retryable: bool) -> Outcome:
        """Delete what this attempt created, then fail the order. A failing delete raises: redelivery retries it."""
        assert self.overflow is not None
        if await self.overflow.deallocate_key(name):
            log.info("deleted the overflow server of a failed attempt", order_id=str(order.order_id), name=name)
        async with unit_of_work(self.sessions) as s:
            if not await claim(s, inbox, CONSUMER, event_id):
                return Outcome.DUPLICATE
            if not await _move_overflow(s, order.order_id, name, FAILING, OverflowStatus.FAILED):
                return Outcome.DUPLICATE
            await self._emit_failed(s, order, event_id, f"Hetzner overflow server: {reason}", retryable=retryable)
        return Outcome.FAILED

    async def _emit_failed(
        self, s: AsyncSession, order: OrderSpec, event_id: uuid.UUID, reason: str, *, retryable: bool
    ) -> None:
        await add_event(
            s,
            outbox,
            OrderFailedV1(
                order_id=order.order_id, stage=FailureStage.ALLOCATION, reason=reason[:4000], retryable=retryable
            ),
            correlation_id=str(order.order_id),
            event_id=uuid.uuid5(event_id, "order-failed"),
        )

    # --- housekeeping ---------------------------------------------------------------------------------------------

    async def sweep_stale(self, now: datetime | None = None) -> int:
        """Attempts stuck past ``overflow_stale_seconds`` (their event was dead-lettered, say): delete the server.

        The order is failed (again, harmlessly, if its dead-lettered event already did); a retry starts a new attempt.
        """
        if self.overflow is None:
            return 0
        cutoff = (now or datetime.now(UTC)) - timedelta(seconds=self.settings.overflow_stale_seconds)
        cleaned = 0
        async with unit_of_work(self.sessions) as s:
            stale = [
                (r.order_id, r.name, r.status)
                for r in await repo.stale_overflows(
                    s, [OverflowStatus.CREATING.value, OverflowStatus.FAILING.value], cutoff
                )
            ]
        for order_id, name, status in stale:
            try:
                await self.overflow.deallocate_key(name)
            except ProviderError as exc:
                log.warning("stale overflow cleanup failed", order_id=str(order_id), name=name, error=str(exc))
                continue
            async with unit_of_work(self.sessions) as s:
                if await _move_overflow(
                    s, order_id, name, status, OverflowStatus.FAILED, error="stale attempt cleaned up"
                ):
                    cleaned += 1
                    reason = f"Hetzner overflow attempt {name} made no progress and was cleaned up"
                    await add_event(
                        s,
                        outbox,
                        OrderFailedV1(order_id=order_id, stage=FailureStage.ALLOCATION, reason=reason, retryable=True),
                        correlation_id=str(order_id),
                        event_id=uuid.uuid5(order_id, f"stale:{name}"),
                    )
        return cleaned


async def _move_overflow(
    s: AsyncSession, order_id: uuid.UUID, name: str, expected: str, to: str, **values: Any
) -> bool:
    """Compare-and-set on (order, attempt name, status): False if another worker moved the attempt on."""
    where = (OverflowServer.name == name,)
    return (
        await state.try_transition(s, OVERFLOW, order_id, expected, to, actor=CONSUMER, where=where, **values)
        is not None
    )
