"""Event handlers of the records context: server-allocated → records + dns-ready (or order-failed);
mail-ready → the mail records (MX, SPF, DKIM, DMARC, …); tenant-decommissioned → delete the records we created;
tenant-task-requested (switch-dns, tool-dns) → the records moved to a tenant's new server, or a tool's subdomain
record added or removed, reported."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from letsbe_contracts import DnsReadyV1, FailureStage, OrderFailedV1, ServerAllocatedV1
from letsbe_contracts.events import (
    MailReadyV1,
    TenantDecommissionedV1,
    TenantTaskRequestedV1,
    ToolChangeTask,
)
from letsbe_dns.cloudflare import CloudflareError
from letsbe_dns.db import inbox, outbox
from letsbe_dns.records.service import Outcome, RecordsService
from letsbe_dns.verify import NotVisible
from letsbe_platform.bus import Delivery, PermanentError
from letsbe_platform.db import unit_of_work
from letsbe_platform.logging import get_logger
from letsbe_platform.outbox import add_event, handled, inboxed

log = get_logger(__name__)

ON_SERVER_ALLOCATED = "dns-on-server-allocated"
ON_TENANT_DECOMMISSIONED = "dns-on-tenant-decommissioned"
ON_MAIL_READY = "dns-on-mail-ready"
ON_TASK_REQUESTED = "dns-on-tenant-task-requested"

DNS_FAILURES = Counter("dns_order_failures_total", "Orders failed at the DNS stage, by reason", ["reason"])


async def finished(sessions: async_sessionmaker[AsyncSession], delivery: Delivery) -> bool:
    """A redelivery of an event we finished: nothing to do, and no Cloudflare call."""
    async with unit_of_work(sessions) as session:
        return await handled(session, inbox, delivery.consumer, delivery.event_id)


class ServerAllocatedHandler:
    def __init__(self, service: RecordsService, sessions: async_sessionmaker[AsyncSession], max_deliver: int):
        self.service = service
        self.sessions = sessions
        self.max_deliver = max_deliver

    async def __call__(self, event: ServerAllocatedV1, delivery: Delivery) -> None:
        order = event.order
        bound = log.bind(order_id=str(order.order_id), tenant_id=str(order.order_id), event_id=str(delivery.event_id))
        if await finished(self.sessions, delivery):
            return
        try:
            outcome = await self.service.apply(order, event.server, heartbeat=delivery.in_progress)
        except KeyError as exc:  # a tool the catalog does not know: retrying cannot help
            await self._fail(event, delivery, f"unknown tool {exc.args[0]!r} in the order", retryable=False)
            return
        except CloudflareError as exc:
            final = not exc.retryable or delivery.num_delivered >= self.max_deliver
            if not final:
                raise  # nak with backoff; the SDK has already retried this call with Retry-After
            bound.warning("cloudflare refused", error=exc.message, status=exc.status)
            await self._fail(event, delivery, exc.message, retryable=exc.retryable, kind="cloudflare")
            return
        except NotVisible as exc:
            if delivery.num_delivered < self.max_deliver:
                raise
            await self._fail(event, delivery, str(exc), retryable=True, kind="not-visible")
            return
        await self._ready(event, delivery, outcome, bound)

    @inboxed(inbox)
    async def _ready(
        self, session: AsyncSession, event: ServerAllocatedV1, delivery: Delivery, outcome: Outcome, bound: Any
    ) -> None:
        ready = DnsReadyV1(order=event.order, server=event.server, records=outcome.refs)
        await add_event(
            session,
            outbox,
            ready,
            correlation_id=str(event.order.order_id),
            event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"dns-ready:{delivery.event_id}"),
        )
        bound.info("dns ready", records=len(outcome.applied), wildcard_refused=outcome.wildcard_refused)

    @inboxed(inbox)
    async def _fail(
        self,
        session: AsyncSession,
        event: ServerAllocatedV1,
        delivery: Delivery,
        reason: str,
        *,
        retryable: bool,
        kind: str = "invalid",
    ) -> None:
        DNS_FAILURES.labels(kind).inc()
        order_id = event.order.order_id
        failed = OrderFailedV1(order_id=order_id, stage=FailureStage.DNS, reason=reason[:4000], retryable=retryable)
        await add_event(
            session,
            outbox,
            failed,
            correlation_id=str(order_id),
            event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"order-failed:dns:{delivery.event_id}"),
        )
        log.error("order failed at DNS", order_id=str(order_id), reason=reason[:500])


class MailReadyHandler:
    """The order is fulfilled by now, so a failure here fails no order: Cloudflare's refusal is dead-lettered (and
    alerted on as every dead letter is); anything else retries with the consumer's backoff."""

    def __init__(self, service: RecordsService, sessions: async_sessionmaker[AsyncSession]):
        self.service = service
        self.sessions = sessions

    async def __call__(self, event: MailReadyV1, delivery: Delivery) -> None:
        if await finished(self.sessions, delivery):
            return
        try:
            applied = await self.service.apply_mail(event, heartbeat=delivery.in_progress)
        except CloudflareError as exc:
            if exc.retryable:
                raise
            DNS_FAILURES.labels("mail-cloudflare").inc()
            raise PermanentError(f"cloudflare refused the mail records of {event.order.domain}: {exc.message}") from exc
        await self._done(event, delivery, len(applied))

    @inboxed(inbox)
    async def _done(self, session: AsyncSession, event: MailReadyV1, delivery: Delivery, records: int) -> None:
        log.info(
            "mail records published",
            tenant_id=str(event.tenant_id),
            event_id=str(delivery.event_id),
            records=records,
            dkim_selector=event.dkim_selector,
        )


class TenantDecommissionedHandler:
    def __init__(self, service: RecordsService, sessions: async_sessionmaker[AsyncSession]):
        self.service = service
        self.sessions = sessions

    async def __call__(self, event: TenantDecommissionedV1, delivery: Delivery) -> None:
        if await finished(self.sessions, delivery):
            return
        # Deleting is idempotent (a record already gone counts as done), so a retry after a crash is harmless.
        deleted = await self.service.decommission(event.tenant_id)
        await self._done(event, delivery, deleted)

    @inboxed(inbox)
    async def _done(
        self, session: AsyncSession, event: TenantDecommissionedV1, delivery: Delivery, deleted: int
    ) -> None:
        log.info("tenant records removed", tenant_id=str(event.tenant_id), deleted=deleted)


class TenantTaskHandler:
    """The hub's tenant tasks that are the DNS service's (the provisioner's are acked here unread): ``switch-dns``
    moves the tenant's records to its new server's address (the same records and checks as for a new order),
    ``tool-dns`` adds or removes a tool's subdomain record. Upserts, so a redelivery before the inbox claim writes the
    same records again. Cloudflare's refusal is reported as FAILED (the hub's job retries or fails visibly); anything
    else retries with the consumer's backoff. The report and the inbox claim commit together."""

    def __init__(self, service: RecordsService, sessions: async_sessionmaker[AsyncSession]):
        self.service = service
        self.sessions = sessions

    async def __call__(self, event: TenantTaskRequestedV1, delivery: Delivery) -> None:
        task = event.task
        if task.kind not in ("switch-dns", "tool-dns") or await finished(self.sessions, delivery):
            return
        started = datetime.now(UTC)
        status, detail, changes = "SUCCEEDED", None, []
        try:
            if isinstance(task, ToolChangeTask):
                changes = await self.service.change_tool(
                    task.order, task.server, task.action, task.tool, heartbeat=delivery.in_progress
                )
            else:
                outcome = await self.service.apply(task.order, task.server, heartbeat=delivery.in_progress)
                detail = f"{len(outcome.applied)} record(s) point at {task.server.ipv4}"
        except CloudflareError as exc:
            if exc.retryable:
                raise  # nak with backoff; past max_deliver a dead letter, and the hub's job asks again later
            DNS_FAILURES.labels(f"{task.kind}-cloudflare").inc()
            status, detail = "FAILED", f"cloudflare refused: {exc.message}"[:4000]
        await self._report(event, delivery, started, status, detail, changes)

    @inboxed(inbox)
    async def _report(
        self,
        session: AsyncSession,
        event: TenantTaskRequestedV1,
        delivery: Delivery,
        started: datetime,
        status: str,
        detail: str | None,
        changes: list[str],
    ) -> None:
        report = event.report(status, started, detail=detail, changes=changes)
        await add_event(session, outbox, report, correlation_id=str(event.tenant_id), event_id=event.report_event_id)
        log.info("tenant task", tenant_id=str(event.tenant_id), kind=event.task.kind, status=status, detail=detail,
                 changes=changes)  # fmt: skip
