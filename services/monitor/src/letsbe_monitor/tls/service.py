"""The TLS expiry checker: every watched tenant's domain and tool subdomains, every ``tls_check_interval``.

Due tenants are claimed (tls_checked_at moved to now) in a short transaction, probed concurrently with no
transaction open, and judged afterwards under the tenant's row lock — so replicas share the work and a slow host
never holds a database connection.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update

from letsbe_monitor.alerts.rules import evaluate_tls
from letsbe_monitor.alerts.service import Judge
from letsbe_monitor.metrics import TLS_CHECKS
from letsbe_monitor.tenants.models import Tenant
from letsbe_monitor.tenants.service import lock_tenant, tls_hosts
from letsbe_monitor.tls.probe import TlsProbeError, served_not_after
from letsbe_platform.db import unit_of_work
from letsbe_platform.logging import get_logger

log = get_logger(__name__)


@dataclass
class TenantTls:
    tenant_id: uuid.UUID
    not_after: dict[str, datetime]
    errors: dict[str, str]


class TlsChecker(Judge):
    """Checks the certificates of due tenants (run by a ``letsbe_platform.workers.Periodic``).

    Replica-safe by construction: a round claims its tenants ``FOR UPDATE SKIP LOCKED`` and stamps
    ``tls_checked_at``, so replicas share the work and never check the same tenant in the same period."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._limit = asyncio.Semaphore(self.settings.tls_concurrency)

    async def once(self) -> int:
        """Check one batch of due tenants; returns how many were checked."""
        now = self.clock()
        due_before = now - timedelta(seconds=self.settings.tls_check_interval_seconds)
        async with unit_of_work(self.sessions) as session:
            rows = (
                await session.execute(
                    select(Tenant.tenant_id, Tenant.domain, Tenant.tools)
                    .where(
                        Tenant.watched,
                        Tenant.domain.is_not(None),
                        or_(Tenant.tls_checked_at.is_(None), Tenant.tls_checked_at < due_before),
                    )
                    .order_by(Tenant.tls_checked_at.asc().nulls_first())
                    .limit(self.settings.tls_batch)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if rows:
                await session.execute(
                    update(Tenant).where(Tenant.tenant_id.in_([r.tenant_id for r in rows])).values(tls_checked_at=now)
                )
        if not rows:
            return 0
        results = await asyncio.gather(*(self._check(r.tenant_id, tls_hosts(r.domain, list(r.tools))) for r in rows))
        for res in results:
            await self._judge(res)
        return len(rows)

    async def check_tenant(self, tenant_id: uuid.UUID) -> None:
        """Check one tenant now (tests, and an operator's 'check again')."""
        async with self.sessions() as session:
            tenant = await session.get(Tenant, tenant_id)
            if tenant is None or tenant.domain is None:
                return
            hosts = tls_hosts(tenant.domain, list(tenant.tools))
        await self._judge(await self._check(tenant_id, hosts))

    async def _check(self, tenant_id: uuid.UUID, hosts: list[str]) -> TenantTls:
        async def one(host: str) -> tuple[str, datetime | str]:
            async with self._limit:
                try:
                    na = await served_not_after(
                        host,
                        connect_host=self.settings.tls_connect_host,
                        port=self.settings.tls_port,
                        timeout=self.settings.tls_timeout_seconds,
                    )
                    TLS_CHECKS.labels("ok").inc()
                    return host, na
                except TlsProbeError as exc:
                    TLS_CHECKS.labels("error").inc()
                    return host, str(exc)

        out = TenantTls(tenant_id, {}, {})
        for host, value in await asyncio.gather(*(one(h) for h in hosts)):
            if isinstance(value, datetime):
                out.not_after[host] = value
            else:
                out.errors[host] = value
        return out

    async def _judge(self, res: TenantTls) -> None:
        now = self.clock()
        async with unit_of_work(self.sessions) as session:
            tenant = await lock_tenant(session, res.tenant_id, create=False)
            if tenant is None or not tenant.watched:
                return
            tenant.tls_checked_at = now
            tenant.tls_not_after = min(res.not_after.values()) if res.not_after else None
            tenant.tls_error = "; ".join(res.errors.values())[:4000] or None
            # Unreachable hosts decide nothing here (an offline tenant has its own alert); the ones that answered do.
            obs = evaluate_tls(res.tenant_id, res.not_after, self.settings, now)
            if obs is not None:
                await self.engine.apply(session, [obs], now)
