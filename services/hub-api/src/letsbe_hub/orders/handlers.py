"""Event consumers that move orders along. Each runs in one transaction with its inbox claim, so a redelivered
event does nothing the second time; state checks in orders.service make late and out-of-order events harmless."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from letsbe_contracts.enums import FailureStage
from letsbe_contracts.enums import OrderStatus as S
from letsbe_contracts.events import (
    DeadLetteredV1,
    DnsReadyV1,
    OrderFailedV1,
    ProvisionedV1,
    ProvisioningLogV1,
    ProvisioningStepV1,
    ServerAllocatedV1,
)
from letsbe_hub.config import HubSettings
from letsbe_hub.db import inbox
from letsbe_hub.notifications.service import enqueue_welcome
from letsbe_hub.orders import repository as repo
from letsbe_hub.orders import service
from letsbe_hub.orders.state import lock_stream, notify_stream
from letsbe_platform.bus import Delivery, PermanentError
from letsbe_platform.db import unit_of_work
from letsbe_platform.logging import get_logger
from letsbe_platform.outbox import inboxed

log = get_logger(__name__)

# A dead letter of one of these fails the order at that stage; dead letters of anything else (a log line, a
# heartbeat) are not a reason to fail an order.
DEAD_LETTER_STAGE: dict[str, FailureStage] = {
    "order-created": FailureStage.ALLOCATION,
    "server-allocated": FailureStage.DNS,
    "dns-ready": FailureStage.PROVISIONING,
    "provisioned": FailureStage.PROVISIONING,
}


class OrderHandlers:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: HubSettings,
        *,
        on_fulfilled: Callable[[], None] = lambda: None,
    ):
        self.sessions = sessions
        self.settings = settings
        self.on_fulfilled = on_fulfilled

    async def _advance(
        self, session: AsyncSession, order_id: uuid.UUID, target: S, actor: str, reason: str, **fields: object
    ) -> bool:
        try:
            return await service.advance(session, order_id, target, actor=actor, reason=reason, **fields)
        except LookupError as exc:  # retrying cannot make an order exist: dead-letter it, visibly
            raise PermanentError(str(exc)) from None

    @inboxed(inbox)
    async def on_server_allocated(self, session: AsyncSession, event: ServerAllocatedV1, delivery: Delivery) -> None:
        s = event.server
        await self._advance(
            session,
            event.order.order_id,
            S.DNS_PENDING,
            delivery.consumer,
            f"{s.provider} server {s.ipv4} allocated",
            server_target=s.model_dump(mode="json"),
        )

    @inboxed(inbox)
    async def on_dns_ready(self, session: AsyncSession, event: DnsReadyV1, delivery: Delivery) -> None:
        await self._advance(
            session,
            event.order.order_id,
            S.PROVISIONING,
            delivery.consumer,
            f"{len(event.records)} DNS record(s) point at {event.server.ipv4}",
            server_target=event.server.model_dump(mode="json"),
            dns_records=[r.model_dump(mode="json") for r in event.records],
        )

    async def on_provisioned(self, event: ProvisionedV1, delivery: Delivery) -> None:
        if await self._fulfil(event, delivery):
            self.on_fulfilled()  # after the commit: the mailer finds the row

    @inboxed(inbox)
    async def _fulfil(self, session: AsyncSession, event: ProvisionedV1, delivery: Delivery) -> bool:
        fulfilled = await self._advance(
            session,
            event.order.order_id,
            S.FULFILLED,
            delivery.consumer,
            f"provisioned in {event.duration_seconds:.0f}s (job {event.job_id})",
            server_target=event.server.model_dump(mode="json"),
            tenant_id=event.tenant_id,
        )
        if fulfilled:
            order = await repo.get(session, event.order.order_id)
            assert order is not None
            await enqueue_welcome(session, order, mail_from=self.settings.mail_from)
        return fulfilled

    async def on_order_failed(self, event: OrderFailedV1, delivery: Delivery) -> None:
        step = f" (step {event.step})" if event.step else ""
        await self._fail(event, delivery, event.order_id, event.stage, f"{event.reason}{step}", event.retryable)

    async def on_dead_lettered(self, event: DeadLetteredV1, delivery: Delivery) -> None:
        event_type = event.event_type or _type_from_subject(event.original_subject)
        stage = DEAD_LETTER_STAGE.get(event_type or "")
        order_id = _uuid(event.correlation_id)
        if stage is not None and order_id is not None:
            reason = f"{event.consumer} gave up on {event_type} after {event.deliveries} deliveries: {event.error}"
            await self._fail(event, delivery, order_id, stage, reason, True)

    @inboxed(inbox)
    async def _fail(
        self,
        session: AsyncSession,
        event: OrderFailedV1 | DeadLetteredV1,
        delivery: Delivery,
        order_id: uuid.UUID,
        stage: FailureStage,
        reason: str,
        retryable: bool,
    ) -> None:
        await service.fail(session, order_id, stage=stage, reason=reason, retryable=retryable, actor=delivery.consumer)

    # --- live progress: stored once per (job, seq) / (job, step, attempt, status), streamed by SSE ----------------

    async def on_provisioning_step(self, event: ProvisioningStepV1, delivery: Delivery) -> None:
        await self._store_progress(
            event.order_id,
            event.job_id,
            "step",
            event.step,
            f"step:{event.job_id}:{event.step}:{event.attempt}:{event.status}",
            event.model_dump(mode="json", include={"step", "name", "status", "attempt", "exit_code", "error"}),
            delivery,
        )

    async def on_provisioning_log(self, event: ProvisioningLogV1, delivery: Delivery) -> None:
        await self._store_progress(
            event.order_id,
            event.job_id,
            "log",
            event.step,
            f"log:{event.job_id}:{event.seq}",
            event.model_dump(mode="json", include={"step", "seq", "stream", "line"}),
            delivery,
        )

    async def _store_progress(
        self,
        order_id: uuid.UUID,
        job_id: uuid.UUID,
        kind: str,
        step: int,
        dedup_key: str,
        payload: dict[str, object],
        delivery: Delivery,
    ) -> None:
        async with unit_of_work(self.sessions) as session:
            if await repo.status_of(session, order_id) is None:
                log.warning("progress for an unknown order dropped", order_id=str(order_id), kind=kind)
                return
            await lock_stream(session, order_id)
            new_id = await repo.insert_progress(
                session,
                order_id=order_id,
                job_id=job_id,
                kind=kind,
                step=step,
                dedup_key=dedup_key,
                payload=payload,
                at=delivery.envelope.occurred_at,
            )
            if new_id is not None:
                await notify_stream(session, order_id)


def _uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


def _type_from_subject(subject: str) -> str | None:
    """``<ns>.dns.ready.v1`` → ``dns-ready`` (for dead letters that were not even valid envelopes)."""
    parts = subject.split(".")
    return "-".join(parts[1:-1]) if len(parts) >= 3 else None
