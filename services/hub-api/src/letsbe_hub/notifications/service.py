"""Enqueue the welcome email in the transaction that fulfils the order (see notifications.mailer)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from email.utils import parseaddr
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_hub.notifications.models import WelcomeEmail


class Recipient(Protocol):
    """What the welcome email reads of a fulfilled order (an ``orders.models.Order``; orders sit above this)."""

    id: uuid.UUID
    customer_email: str
    customer_name: str
    domain: str
    tools: Sequence[str]


def message_id(order_id: uuid.UUID, mail_from: str) -> str:
    """The same order always gets the same Message-ID, so a resend after a crash is recognisably the same mail."""
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "letsbe.biz"
    return f"<welcome.{order_id}@{domain}>"


async def enqueue_welcome(session: AsyncSession, order: Recipient, *, mail_from: str) -> bool:
    """True if queued now; False if this order's welcome email was queued before."""
    stmt = (
        insert(WelcomeEmail)
        .values(
            order_id=order.id,
            recipient=order.customer_email,
            customer_name=order.customer_name,
            domain=order.domain,
            tools=list(order.tools),
            message_id=message_id(order.id, mail_from),
        )
        .on_conflict_do_nothing(index_elements=["order_id"])
        .returning(WelcomeEmail.order_id)
    )
    return (await session.execute(stmt)).scalar_one_or_none() is not None


async def status(session: AsyncSession, order_id: uuid.UUID) -> WelcomeEmail | None:
    return (await session.execute(select(WelcomeEmail).where(WelcomeEmail.order_id == order_id))).scalar_one_or_none()
