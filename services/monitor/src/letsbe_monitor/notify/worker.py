"""The delivery worker: sends pending notifications, retries failures with backoff, never inside rule evaluation.

Rows are leased (status 'sending', locked_until) in a short transaction, sent with no transaction open, and
settled afterwards — only by the lease holder. A worker killed mid-send leaves a lease that expires, and the row
goes out again (at-least-once; the delivery id travels as Message-ID / Idempotency-Key so receivers can dedupe).
Silences and acknowledgements are checked at send time, so one set after an alert opened still applies.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from letsbe_monitor.alerts import repository as repo
from letsbe_monitor.alerts.models import Alert
from letsbe_monitor.clock import Clock, utcnow
from letsbe_monitor.config import MonitorSettings
from letsbe_monitor.metrics import DELIVERIES, DELIVERY_SECONDS
from letsbe_monitor.notify.channels import Channel, DeliveryFailed
from letsbe_monitor.notify.models import DELIVERY, FAILED, PENDING, RESOLVED, SENDING, SENT, SUPPRESSED, Delivery
from letsbe_monitor.notify.routing import STAFF_CHANNELS
from letsbe_platform import state
from letsbe_platform.db import unit_of_work
from letsbe_platform.logging import get_logger
from letsbe_platform.waiting import Backoff

log = get_logger(__name__)
ACTOR = "delivery-worker"


class DeliveryWorker:
    """Sends due notification deliveries (run by a ``letsbe_platform.workers.Periodic``).

    Replica-safe by construction: a round leases its rows (``FOR UPDATE SKIP LOCKED``, then ``SENDING`` with a
    ``locked_until``), so every monitor replica runs it and no two send the same delivery."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: MonitorSettings,
        channels: Mapping[str, Channel],
        clock: Clock = utcnow,
    ):
        self.sessions = sessions
        self.settings = settings
        self.channels = channels
        self.clock = clock

    async def once(self) -> int:
        """Send one batch of due deliveries; returns how many were taken."""
        now = self.clock()
        async with unit_of_work(self.sessions) as session:
            rows = await self._lease(session, now)
            if not rows:
                return 0
            to_send = await self._drop_suppressed(session, rows, now)
        outcomes = await asyncio.gather(*(self._send(row) for row in to_send))
        async with unit_of_work(self.sessions) as session:
            for row, error in zip(to_send, outcomes, strict=True):
                await self._settle(session, row, error)
        return len(rows)

    async def _lease(self, session: AsyncSession, now: datetime) -> list[Any]:
        due = (
            select(Delivery.id)
            .where(
                or_(
                    and_(Delivery.status == PENDING, Delivery.next_attempt_at <= now),
                    and_(Delivery.status == SENDING, Delivery.locked_until < now),  # a worker died mid-send
                )
            )
            .order_by(Delivery.next_attempt_at)
            .limit(self.settings.delivery_batch)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        lease = now + timedelta(seconds=self.settings.delivery_lease_seconds)
        return await state.transition_all(
            session, DELIVERY, SENDING, where=(Delivery.id.in_(due),), actor=ACTOR, locked_until=lease,
            attempts=Delivery.attempts + 1,
        )  # fmt: skip

    async def _drop_suppressed(self, session: AsyncSession, rows: list[Any], now: datetime) -> list[Any]:
        silenced = await repo.silenced_keys(session, {(r.tenant_id, r.rule) for r in rows}, now)
        acked = set(
            (
                await session.scalars(
                    select(Alert.id).where(Alert.id.in_({r.alert_id for r in rows}), Alert.acknowledged_at.is_not(None))
                )
            ).all()
        )
        keep = []
        for row in rows:
            reason = None
            if (row.tenant_id, row.rule) in silenced:
                reason = "silenced"
            elif row.alert_id in acked and row.kind != RESOLVED and row.channel in STAFF_CHANNELS:
                reason = "acknowledged"
            elif row.channel not in self.channels:
                reason = "channel not configured"
            if reason is None:
                keep.append(row)
                continue
            DELIVERIES.labels(row.channel, "suppressed").inc()
            await state.move(session, DELIVERY, row, SUPPRESSED, actor=ACTOR, last_error=reason, locked_until=None)
        return keep

    async def _send(self, row: Any) -> DeliveryFailed | None:
        started = time.perf_counter()
        try:
            await self.channels[row.channel].send(row.id, row.payload)
            return None
        except DeliveryFailed as exc:
            return exc
        except Exception as exc:  # a bug in a channel must not stop the others; retry like a transient fault
            log.exception("channel crashed", channel=row.channel, delivery_id=str(row.id))
            return DeliveryFailed(f"{type(exc).__name__}: {exc}"[:500])
        finally:
            DELIVERY_SECONDS.labels(row.channel).observe(time.perf_counter() - started)

    async def _settle(self, session: AsyncSession, row: Any, error: DeliveryFailed | None) -> None:
        now = self.clock()

        async def settle(to: str, **values: Any) -> None:  # only the lease holder: the attempt is still ours
            mine = (Delivery.attempts == row.attempts,)
            await state.try_transition(session, DELIVERY, row.id, SENDING, to, actor=ACTOR, where=mine, **values)

        if error is None:
            DELIVERIES.labels(row.channel, "sent").inc()
            await settle(SENT, sent_at=now, locked_until=None, last_error=None)
            log.info(
                "notification sent",
                channel=row.channel,
                kind=row.kind,
                alert_id=str(row.alert_id),
                attempt=row.attempts,
            )
            return
        if error.retryable and row.attempts < self.settings.delivery_max_attempts:
            delay = self.backoff(row.attempts, error.retry_after)
            DELIVERIES.labels(row.channel, "retry").inc()
            await settle(
                PENDING, next_attempt_at=now + timedelta(seconds=delay), locked_until=None, last_error=str(error)[:2000]
            )
            log.warning(
                "notification failed; will retry",
                channel=row.channel,
                alert_id=str(row.alert_id),
                attempt=row.attempts,
                retry_in=round(delay, 1),
                error=str(error)[:300],
            )
            return
        DELIVERIES.labels(row.channel, "failed").inc()
        await settle(FAILED, locked_until=None, last_error=str(error)[:2000])
        log.error(
            "notification given up",
            channel=row.channel,
            alert_id=str(row.alert_id),
            attempt=row.attempts,
            error=str(error)[:300],
        )

    def backoff(self, attempts: int, retry_after: float | None = None) -> float:
        """Exponential, capped, with jitter so a recovering receiver is not hit by every retry at once."""
        s = self.settings
        delay = Backoff(s.delivery_backoff_base_seconds, s.delivery_backoff_max_seconds).nth(attempts)
        delay = delay * random.uniform(0.5, 1.0)
        if retry_after is not None:
            delay = max(delay, min(retry_after, s.delivery_backoff_max_seconds))
        return delay
