"""The welcome email: sent once per fulfilled order, over SMTP (aiosmtplib).

SMTP has no idempotency key, so "exactly once" is built around one row per order (``welcome_emails``):

1. Enqueue — the hub-on-provisioned handler inserts the row (state ``pending``, a Message-ID derived from the
   order id) in the SAME transaction as the FULFILLED transition and its inbox claim. A redelivered
   ``provisioned`` event finds the inbox claim and the row (``ON CONFLICT DO NOTHING``): never a second row.
2. Claim — before talking to SMTP, a mailer commits ``sending`` + ``claimed_at`` (``FOR UPDATE SKIP LOCKED``,
   so two hub replicas never claim the same row).
3. Send, and only after the server's 250 commit ``sent``. A ``sent`` row is never sent again.

Crashes: before (2) the row stays ``pending`` and is sent later; after (3) nothing is resent. The one window
left is between the server accepting the message and the ``sent`` commit (milliseconds): the row stays
``sending``, and once its lease expires it is sent again with the SAME Message-ID, which the recipient's mail
system uses to drop the duplicate. A temporary SMTP error puts the row back to ``pending`` with a backoff; a
permanent one (5xx) marks it ``failed`` for an operator to see on the order.
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import aiosmtplib
from prometheus_client import Counter
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from letsbe_contracts import load_catalog
from letsbe_hub.config import HubSettings
from letsbe_hub.credentials import service as credentials
from letsbe_hub.notifications.models import WelcomeEmail
from letsbe_platform.db import unit_of_work
from letsbe_platform.logging import get_logger
from letsbe_platform.waiting import Backoff

log = get_logger(__name__)

RETRY = Backoff(30, 3600)  # a failed send is tried again after 30 s, 1 min, … at most every hour

WELCOME_EMAILS = Counter("hub_welcome_emails_total", "Welcome email send attempts by outcome", ["outcome"])

W = WelcomeEmail


async def claim_due(session: AsyncSession, table: Any, key: Any, lease: timedelta, batch: int) -> list[Any]:
    """The mail queues' claim (welcome and billing emails): up to ``batch`` rows due now (pending and past their
    ``next_attempt_at``, or stuck in ``sending`` beyond ``lease``: a sender that died), oldest first, marked
    ``sending`` with one more attempt. ``FOR UPDATE SKIP LOCKED``: replicas never claim the same row; the database's
    clock decides, so a lease is real time whatever the sender's clock says."""
    due = (
        select(key)
        .where(
            or_(
                and_(table.state == "pending", table.next_attempt_at <= func.now()),
                and_(table.state == "sending", table.claimed_at < func.now() - lease),
            )
        )
        .order_by(table.created_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    claimed = (
        update(table)
        .where(key.in_(due.scalar_subquery()))
        .values(state="sending", attempts=table.attempts + 1, claimed_at=func.now())
        .returning(table)
        .execution_options(synchronize_session=False)
    )
    return list((await session.execute(claimed)).scalars().all())


async def smtp_send(message: EmailMessage, s: HubSettings) -> None:
    """Hand one message to the configured SMTP server (raises aiosmtplib's errors; callers classify them)."""
    await aiosmtplib.send(
        message,
        hostname=s.smtp_host,
        port=s.smtp_port,
        username=s.smtp_username,
        password=s.smtp_password.get_secret_value() if s.smtp_password else None,
        start_tls=s.smtp_starttls,
        timeout=s.smtp_timeout_seconds,
    )


class WelcomeMailer:
    """Sends due welcome emails (run by a ``letsbe_platform.workers.Periodic``, kicked when an order is fulfilled).

    Replica-safe by construction: rows are claimed ``FOR UPDATE SKIP LOCKED`` (step 2 above), so every hub replica
    runs it and no two send the same email."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: HubSettings,
        *,
        poll_seconds: float = 15.0,
        lease_seconds: float = 300.0,
        batch: int = 10,
    ):
        self.sessions = sessions
        self.settings = settings
        self.poll_seconds = poll_seconds
        self.lease = timedelta(seconds=lease_seconds)
        self.batch = batch

    async def send_due(self) -> int:
        """Claim due emails, send each, record the result. Returns how many were attempted."""
        async with unit_of_work(self.sessions) as session:
            rows = await claim_due(session, W, W.order_id, self.lease, self.batch)
        for row in rows:
            await self._deliver(row)
        return len(rows)

    async def _deliver(self, row: WelcomeEmail) -> None:
        s = self.settings
        # A fresh one-time link to the tools' logins for every attempt (a resend kills the earlier link). The email
        # carries the link, never a credential.
        async with unit_of_work(self.sessions) as session:
            link = await credentials.mint_link(session, row.order_id, s)
        try:
            await smtp_send(compose(row, s.mail_from, credentials_link=link), s)
        except aiosmtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.code < 600
            await self._record_failure(row, f"SMTP {exc.code}: {exc.message}", permanent=permanent)
            return
        except (aiosmtplib.SMTPException, OSError, TimeoutError, ssl.SSLError) as exc:
            await self._record_failure(row, f"{type(exc).__name__}: {exc}", permanent=False)
            return
        async with unit_of_work(self.sessions) as session:
            await session.execute(
                update(W)
                .where(W.order_id == row.order_id, W.state == "sending")
                .values(state="sent", sent_at=func.now(), last_error=None)
            )
        WELCOME_EMAILS.labels("sent").inc()
        log.info("welcome email sent", order_id=str(row.order_id), attempt=row.attempts)

    async def _record_failure(self, row: WelcomeEmail, error: str, *, permanent: bool) -> None:
        delay = timedelta(seconds=RETRY.nth(row.attempts))
        async with unit_of_work(self.sessions) as session:
            await session.execute(
                update(W)
                .where(W.order_id == row.order_id, W.state == "sending")
                .values(
                    state="failed" if permanent else "pending",
                    last_error=error[:2000],
                    next_attempt_at=func.now() + delay,
                )
            )
        WELCOME_EMAILS.labels("failed" if permanent else "retry").inc()
        log.warning("welcome email not sent", order_id=str(row.order_id), error=error[:300], permanent=permanent)


def compose(row: WelcomeEmail, mail_from: str, *, credentials_link: str | None = None) -> EmailMessage:
    catalog = load_catalog()
    lines = [
        f"Hello {row.customer_name},",
        "",
        f"your LetsBe server for {row.domain} is ready. Your tools:",
        "",
    ]
    for name in row.tools:
        try:
            tool = catalog.tool(name)
        except KeyError:
            continue
        if tool.subdomain and not tool.admin_only:  # admin_only (Portainer): the operator's, never public
            lines.append(f"  {tool.title:<16} https://{tool.subdomain}.{row.domain}")
    if credentials_link:
        lines += [
            "",
            "Your admin logins for these tools are waiting behind this link. It works once, for the next",
            "few days: open it when your password manager is ready, and store each login there.",
            "",
            f"  {credentials_link}",
        ]
    lines += [
        "",
        "Get the LetsBe app for your phone and desktop: https://letsbe.biz/apps",
        "",
        "Welcome aboard,",
        "the LetsBe team",
    ]
    msg = EmailMessage()
    msg["From"] = mail_from
    msg["To"] = row.recipient
    msg["Subject"] = f"Your LetsBe server for {row.domain} is ready"
    msg["Message-ID"] = row.message_id
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["X-LetsBe-Order"] = str(row.order_id)
    msg.set_content("\n".join(lines))
    return msg
