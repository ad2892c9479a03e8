"""The rules of the records context: upsert a tenant's records, verify them on DNS, remove exactly our own.

Cloudflare calls happen outside any long database transaction and are idempotent on their own: each record is
looked up before it is written (a correct one is left alone, a stale one edited in place, a missing one created),
and every record we create carries a comment naming the tenant, so a worker killed between Cloudflare's answer and
our tracking row still recognises the record as its own on the next attempt. Work on one domain is serialised by
a Postgres advisory lock, so duplicate events handled at the same time cannot both create.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from letsbe_contracts import Catalog, DnsRecordRef, OrderSpec, ServerTarget
from letsbe_contracts.events import MailReadyV1
from letsbe_dns.cloudflare import RECORD_MISSING_CODE, CloudflareError, DnsProvider, Record, RecordSpec, Zone
from letsbe_dns.config import DnsSettings
from letsbe_dns.records import repository
from letsbe_dns.records.plan import WILDCARD, DesiredRecord, mail_plan, plan
from letsbe_dns.verify import Expected, Verifier
from letsbe_platform.db import unit_of_work
from letsbe_platform.logging import get_logger

log = get_logger(__name__)

Heartbeat = Callable[[], Awaitable[None]]
T = TypeVar("T")


async def _no_heartbeat() -> None:
    return None


async def concurrently(*jobs: Awaitable[T]) -> list[T]:
    """Await ``jobs`` at the same time; the first failure cancels the others and is raised as it is."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def ownership_comment(tenant_id: uuid.UUID) -> str:
    """Written on every record we create (Cloudflare shows it in the dashboard, too)."""
    return f"managed by letsbe; tenant {tenant_id}"


@dataclass(frozen=True)
class Applied:
    desired: DesiredRecord
    record: Record
    outcome: str  # created | updated | unchanged
    created: bool  # ours (decommission removes it)

    def ref(self) -> DnsRecordRef:
        return DnsRecordRef(
            type=self.desired.type,  # type: ignore[arg-type]
            name=self.desired.name,
            content=self.desired.content,
            record_id=self.record.id,
        )

    def expected(self) -> Expected:
        d = self.desired
        return Expected(type=d.type, name=d.name, content=d.content, priority=d.priority)


@dataclass(frozen=True)
class Outcome:
    zone: Zone
    applied: list[Applied]
    wildcard_refused: bool

    @property
    def refs(self) -> tuple[DnsRecordRef, ...]:
        return tuple(a.ref() for a in self.applied)


class RecordsService:
    def __init__(
        self,
        provider: DnsProvider,
        verifier: Verifier,
        sessions: async_sessionmaker[AsyncSession],
        settings: DnsSettings,
        catalog: Catalog,
    ):
        self.provider = provider
        self.verifier = verifier
        self.sessions = sessions
        self.settings = settings
        self.catalog = catalog

    @asynccontextmanager
    async def domain_lock(self, domain: str) -> AsyncIterator[None]:
        async with unit_of_work(self.sessions) as session:
            await repository.lock_domain(session, domain)
            yield

    async def apply(self, order: OrderSpec, server: ServerTarget, *, heartbeat: Heartbeat = _no_heartbeat) -> Outcome:
        """Make the domain point at the server (and carry the mail records), then wait until DNS serves it all."""
        tenant_id = order.order_id
        async with self.domain_lock(order.domain):
            zone = await self.provider.find_zone(order.domain, order.cloudflare_zone_id)
            desired = plan(order, server, self.catalog, wildcard=True)

            async def wildcards() -> list[Applied] | None:
                """The wildcard records, or None when the zone refuses them."""
                out = []
                for d in [d for d in desired if d.purpose == WILDCARD]:
                    try:
                        out.append(await self.upsert(zone, d, tenant_id, order.domain))
                    except CloudflareError as exc:
                        if not exc.validation:
                            raise
                        # The zone (or its plan) refuses wildcard records: one record per tool subdomain instead.
                        log.info("wildcard refused; using per-tool records", domain=order.domain, error=exc.message)
                        return None
                return out

            others = [d for d in desired if d.purpose != WILDCARD]
            wild, applied = await concurrently(
                wildcards(), self.upsert_all(zone, others, tenant_id, order.domain, heartbeat)
            )
            wildcard_refused = wild is None
            if wild is None:
                done = {(d.type, d.name, d.content) for d in others}
                per_tool = [
                    d
                    for d in plan(order, server, self.catalog, wildcard=False)
                    if (d.type, d.name, d.content) not in done
                ]
                applied += await self.upsert_all(zone, per_tool, tenant_id, order.domain, heartbeat)
            else:
                applied = wild + applied
            log.info(
                "records in place",
                domain=order.domain,
                zone=zone.name,
                created=sum(a.outcome == "created" for a in applied),
                updated=sum(a.outcome == "updated" for a in applied),
                unchanged=sum(a.outcome == "unchanged" for a in applied),
            )
            await self.verifier.wait_visible(zone, [a.expected() for a in applied], heartbeat=heartbeat)
            return Outcome(zone=zone, applied=applied, wildcard_refused=wildcard_refused)

    async def apply_mail(self, event: MailReadyV1, *, heartbeat: Heartbeat = _no_heartbeat) -> list[Applied]:
        """The mail records (DKIM with the event's key), once the tenant's Stalwart runs behind open mail ports."""
        order = event.order
        desired = mail_plan(
            order,
            event.server,
            self.catalog,
            dkim_selector=event.dkim_selector,
            dkim_public_key=event.dkim_public_key,
        )
        async with self.domain_lock(order.domain):
            zone = await self.provider.find_zone(order.domain, order.cloudflare_zone_id)
            applied = await self.upsert_all(zone, desired, event.tenant_id, order.domain, heartbeat)
            await self.verifier.wait_visible(zone, [a.expected() for a in applied], heartbeat=heartbeat)
        log.info("mail records in place", domain=order.domain, records=len(applied))
        return applied

    async def upsert_all(
        self, zone: Zone, desired: list[DesiredRecord], tenant_id: uuid.UUID, domain: str, heartbeat: Heartbeat
    ) -> list[Applied]:
        """Upsert ``desired`` (in its order): the records of one name and type one after another (they may share a
        slot), the others at the same time: each is a few Cloudflare round trips, and an order waits for them all."""
        groups: dict[tuple[str, str], list[DesiredRecord]] = {}
        for d in desired:
            groups.setdefault((d.type, d.name), []).append(d)

        async def one_by_one(group: list[DesiredRecord]) -> list[Applied]:
            out = []
            for d in group:
                out.append(await self.upsert(zone, d, tenant_id, domain))
                await heartbeat()
            return out

        applied = {id(a.desired): a for done in await concurrently(*map(one_by_one, groups.values())) for a in done}
        return [applied[id(d)] for d in desired]

    async def upsert(self, zone: Zone, d: DesiredRecord, tenant_id: uuid.UUID, domain: str) -> Applied:
        spec = RecordSpec(
            type=d.type, name=d.name, content=d.content, priority=d.priority, ttl=self.settings.record_ttl
        )
        existing = [r for r in await self.provider.list_records(zone.id, type=d.type, name=d.name)]
        slot = [r for r in existing if d.same_slot(r.content) or d.equals(r.content, r.priority)]
        exact = next((r for r in slot if d.equals(r.content, r.priority)), None)
        if exact is not None:
            record, outcome = exact, "unchanged"
        elif slot:
            replaced = slot[0]
            if replaced.comment != ownership_comment(tenant_id):
                # Write down the customer's content before replacing it (a crash after the edit keeps it).
                async with unit_of_work(self.sessions) as session:
                    if not await repository.created_by_us(session, zone.id, replaced.id):
                        await repository.track(
                            session,
                            tenant_id=tenant_id,
                            domain=domain,
                            zone_id=zone.id,
                            zone_name=zone.name,
                            record_id=replaced.id,
                            type=d.type,
                            name=d.name,
                            content=replaced.content,
                            priority=replaced.priority,
                            purpose=d.purpose,
                            created=False,
                            previous_content=replaced.content,
                            previous_priority=replaced.priority,
                        )
            record, outcome = await self.provider.update_record(zone.id, replaced.id, spec), "updated"
        else:
            try:
                record = await self.provider.create_record(zone.id, spec, comment=ownership_comment(tenant_id))
                outcome = "created"
            except CloudflareError as exc:
                if not exc.record_exists:
                    raise
                # Lost a race with another writer: take what is there if it is what we want.
                again = await self.provider.list_records(zone.id, type=d.type, name=d.name)
                found = next((r for r in again if d.equals(r.content, r.priority)), None)
                if found is None:
                    raise
                record, outcome = found, "unchanged"
        ours = outcome == "created" or record.comment == ownership_comment(tenant_id)
        async with unit_of_work(self.sessions) as session:
            ours = ours or await repository.created_by_us(session, zone.id, record.id)
            await repository.track(
                session,
                tenant_id=tenant_id,
                domain=domain,
                zone_id=zone.id,
                zone_name=zone.name,
                record_id=record.id,
                type=d.type,
                name=d.name,
                content=d.content,
                priority=d.priority,
                purpose=d.purpose,
                created=ours,
            )
        if outcome != "unchanged":
            log.info("record " + outcome, type=d.type, name=d.name, content=d.content, record_id=record.id)
        return Applied(desired=d, record=record, outcome=outcome, created=ours)

    async def change_tool(
        self, order: OrderSpec, server: ServerTarget, action: str, tool: str, *, heartbeat: Heartbeat = _no_heartbeat
    ) -> list[str]:
        """A tool added to or removed from a live tenant: its subdomain's own records where the tenant has per-tool
        records (its zone refused the wildcard); where the tenant's wildcard answers for the subdomain, nothing
        changes. Idempotent like ``apply`` (add) and ``decommission`` (remove). Returns what it did, for the report."""
        tenant_id, purpose = order.order_id, f"tool:{tool}"
        async with unit_of_work(self.sessions) as session:
            wildcard = await repository.live_by_purpose(session, tenant_id, WILDCARD)
        if wildcard:
            return [f"{wildcard[0].name} answers for the tool's subdomain: no record to change"]
        if action == "add":
            desired = [d for d in plan(order, server, self.catalog, wildcard=False) if d.purpose == purpose]
            async with self.domain_lock(order.domain):
                zone = await self.provider.find_zone(order.domain, order.cloudflare_zone_id)
                applied = []
                for d in desired:
                    applied.append(await self.upsert(zone, d, tenant_id, order.domain))
                    await heartbeat()
                await self.verifier.wait_visible(zone, [a.expected() for a in applied], heartbeat=heartbeat)
            return [f"{a.desired.type} {a.desired.name} {a.outcome}" for a in applied]
        async with unit_of_work(self.sessions) as session:
            rows = [r for r in await repository.live_by_purpose(session, tenant_id, purpose) if r.created]
        done = []
        for row in rows:
            existed = await self.provider.delete_record(row.zone_id, row.record_id)
            async with unit_of_work(self.sessions) as session:
                await repository.mark_deleted(session, row.id)
            log.info("record deleted", type=row.type, name=row.name, record_id=row.record_id, existed=existed)
            done.append(f"{row.type} {row.name} deleted" + ("" if existed else " (it was gone already)"))
        return done

    async def decommission(self, tenant_id: uuid.UUID) -> int:
        """Delete every record this service created for the tenant (and nothing else), and put the customer's
        previous content back into the records of theirs we had replaced (apex A, SPF). Returns how many were
        deleted."""
        async with unit_of_work(self.sessions) as session:
            replaced = await repository.live_replaced(session, tenant_id)
        for row in replaced:
            assert row.previous_content is not None
            spec = RecordSpec(
                type=row.type,
                name=row.name,
                content=row.previous_content,
                priority=row.previous_priority,
                ttl=self.settings.record_ttl,
            )
            try:
                await self.provider.update_record(row.zone_id, row.record_id, spec)
            except CloudflareError as exc:
                if exc.status != 404 and RECORD_MISSING_CODE not in exc.codes:
                    raise
                log.info("replaced record gone; nothing to restore", name=row.name, record_id=row.record_id)
            async with unit_of_work(self.sessions) as session:
                await repository.mark_restored(session, row.id)
            log.info("customer record restored", type=row.type, name=row.name, record_id=row.record_id)
        async with unit_of_work(self.sessions) as session:
            rows = await repository.live_created(session, tenant_id)
        deleted = 0
        for row in rows:
            gone_now = await self.provider.delete_record(row.zone_id, row.record_id)
            async with unit_of_work(self.sessions) as session:
                await repository.mark_deleted(session, row.id)
            deleted += int(gone_now)
            log.info("record deleted", type=row.type, name=row.name, record_id=row.record_id, existed=gone_now)
        return deleted
