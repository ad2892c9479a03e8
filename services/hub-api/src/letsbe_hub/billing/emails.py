"""Billing emails (payment failed, suspended, resumed, cancelled): enqueued in the transaction of the change they
announce, with an id derived from their cause (a redelivered event enqueues nothing new), and sent by
:class:`BillingMailer` with the welcome email's protocol (notifications.mailer): claim with ``FOR UPDATE SKIP
LOCKED``, send, mark sent; a resend after a crash keeps the Message-ID."""

from __future__ import annotations

import ssl
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

import aiosmtplib
from prometheus_client import Counter
from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from letsbe_hub.billing.models import BillingEmail
from letsbe_hub.config import HubSettings
from letsbe_hub.notifications.mailer import RETRY, claim_due, smtp_send
from letsbe_platform.db import unit_of_work
from letsbe_platform.logging import get_logger

log = get_logger(__name__)

BILLING_EMAILS = Counter(
    "hub_billing_emails_total", "Billing email send attempts by kind and outcome", ["kind", "outcome"]
)
_NS = uuid.UUID("a4d0c8e2-1b7f-4e59-8f3a-2c6b9e0d7f14")
E = BillingEmail
LEASE = timedelta(minutes=5)


async def enqueue(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    kind: str,
    cause: str,
    recipient: str,
    subject: str,
    lines: list[str],
    mail_from: str,
) -> bool:
    """Queue one email; False if the email for this (kind, order, cause) was queued before."""
    email_id = uuid.uuid5(_NS, f"{kind}:{order_id}:{cause}")
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "letsbe.biz"
    stmt = (
        insert(E)
        .values(
            id=email_id,
            order_id=order_id,
            kind=kind,
            recipient=recipient,
            subject=subject[:300],
            body="\n".join(lines),
            message_id=f"<billing.{email_id}@{domain}>",
        )
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(E.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none() is not None


class BillingMailer:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: HubSettings, *, batch: int = 20):
        self.sessions = sessions
        self.settings = settings
        self.batch = batch

    async def send_due(self) -> int:
        """Claim due emails, send each, record the result. Uses the database's clock: a mail's lease is real time."""
        if not self.settings.smtp_host:
            return 0  # queued until SMTP is configured
        async with unit_of_work(self.sessions) as session:
            rows = await claim_due(session, E, E.id, LEASE, self.batch)
        for row in rows:
            await self._deliver(row)
        return len(rows)

    async def _deliver(self, row: BillingEmail) -> None:
        msg = EmailMessage()
        msg["From"] = self.settings.mail_from
        msg["To"] = row.recipient
        msg["Subject"] = row.subject
        msg["Message-ID"] = row.message_id
        msg["Date"] = format_datetime(datetime.now(UTC))
        msg["X-LetsBe-Order"] = str(row.order_id)
        msg["X-LetsBe-Billing"] = row.kind
        msg.set_content(row.body)
        state, error, delay = "sent", None, timedelta(0)
        try:
            await smtp_send(msg, self.settings)
        except aiosmtplib.SMTPResponseException as exc:
            state = "failed" if 500 <= exc.code < 600 else "pending"
            error = f"SMTP {exc.code}: {exc.message}"
        except (aiosmtplib.SMTPException, OSError, TimeoutError, ssl.SSLError) as exc:
            state, error = "pending", f"{type(exc).__name__}: {exc}"
        if state == "pending":
            delay = timedelta(seconds=RETRY.nth(row.attempts))
        async with unit_of_work(self.sessions) as session:
            await session.execute(
                update(E)
                .where(E.id == row.id, E.state == "sending")
                .values(
                    state=state,
                    last_error=error[:2000] if error else None,
                    sent_at=func.now() if state == "sent" else None,
                    next_attempt_at=func.now() + delay,
                )
            )
        BILLING_EMAILS.labels(row.kind, state).inc()
        log.info("billing email", order_id=str(row.order_id), kind=row.kind, outcome=state, error=error)
