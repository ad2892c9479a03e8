"""Customer data written directly (test setup): a fulfilled order with its tenant, agents, backup, usage, logins."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub_testing.orders import insert_order
from letsbe_hub.config import HubSettings
from letsbe_hub.credentials import service as credentials
from letsbe_hub.credentials.schemas import CredentialsIn
from letsbe_hub.llm import repository as llm_repo
from letsbe_hub.orders.models import OrderTransition, ProvisioningProgress
from letsbe_hub.tenants.models import Agent, BackupReportRow, Tenant
from letsbe_platform.db import unit_of_work


async def fulfilled_order(
    sessions: async_sessionmaker[AsyncSession],
    settings: HubSettings,
    email: str,
    *,
    log_line: str = "found Debian 12 with 8 CPUs",
    tokens: tuple[int, int] = (1000, 500),
    **fields: Any,
) -> uuid.UUID:
    order_id = await insert_order(sessions, "FULFILLED", customer_email=email, **fields)
    now = datetime.now(UTC)
    async with unit_of_work(sessions) as s:
        from letsbe_hub.orders.models import Order

        order = await s.get(Order, order_id)
        assert order is not None
        order.tenant_id = order_id
        s.add(
            Tenant(id=order_id, order_id=order_id, domain=order.domain, tier=order.tier, region="eu", status="ACTIVE")
        )
        for before, after in (("PENDING_PAYMENT", "PAYMENT_CONFIRMED"), ("PROVISIONING", "FULFILLED")):
            s.add(OrderTransition(order_id=order_id, from_status=before, to_status=after, actor="test"))
        job = uuid.uuid4()
        s.add(
            ProvisioningProgress(
                order_id=order_id,
                job_id=job,
                kind="log",
                step=1,
                dedup_key=f"log:{job}:0",
                at=now,
                payload={"seq": 0, "line": log_line, "step": 1},
            )
        )
        for kind in ("safety-wrapper", "secrets-proxy"):
            s.add(
                Agent(
                    tenant_id=order_id,
                    kind=kind,
                    domain=order.domain,
                    version="1.2.3",
                    hostname="vps",
                    last_heartbeat_at=now - timedelta(seconds=5),
                )
            )
        await s.flush()
        s.add(
            BackupReportRow(
                tenant_id=order_id, report_date=date.today(), agent_id=uuid.uuid4(), checked_at=now, status={}
            )
        )
        await llm_repo.add_usage(s, order_id, now.replace(minute=0, second=0, microsecond=0), "gpt", *tokens)
        await credentials.store(
            s,
            order_id,
            CredentialsIn.model_validate(
                {
                    "credentials": [
                        {
                            "tool": "nextcloud",
                            "title": "Nextcloud",
                            "url": "https://cloud.shop.test",
                            "login": "admin",
                            "password": "correct-horse-battery",
                        }
                    ]
                }
            ),
            settings,
        )
    return order_id
