"""The welcome email reaches a real SMTP server once per order, whatever crashes or redeliveries happen."""

import asyncio

import pytest
from sqlalchemy import text

from hub_testing.orders import count, insert_order, orders_settings
from letsbe_contracts.enums import OrderStatus
from letsbe_hub.notifications.mailer import WelcomeMailer
from letsbe_hub.notifications.service import enqueue_welcome, message_id
from letsbe_hub.orders import repository
from letsbe_platform.db import unit_of_work


@pytest.fixture
def mailer_settings(database_url, nats_url, bus_namespace, smtp_server):
    return orders_settings(database_url, nats_url, bus_namespace, None, smtp_server)


async def _queued(sessions, settings, **order_fields) -> str:
    oid = await insert_order(sessions, status=OrderStatus.FULFILLED, tools=["nextcloud", "calcom"], **order_fields)
    async with unit_of_work(sessions) as session:
        order = await repository.get(session, oid)
        assert await enqueue_welcome(session, order, mail_from=settings.mail_from)
        assert not await enqueue_welcome(session, order, mail_from=settings.mail_from)  # once per order
    return str(oid)


async def _row(sessions, oid: str):
    async with sessions() as s:
        return (await s.execute(text("SELECT * FROM hub.welcome_emails WHERE order_id = :o"), {"o": oid})).one()


async def test_the_email_names_the_customer_and_links_each_tool(sessions, mailer_settings, smtp_server):
    oid = await _queued(sessions, mailer_settings, customer_name="Jane Doe", domain="jane.test")
    assert await WelcomeMailer(sessions, mailer_settings).send_due() == 1
    [mail] = smtp_server.messages
    assert mail["Subject"] == "Your LetsBe server for jane.test is ready"
    assert mail["From"] == "LetsBe <hello@letsbe.test>" and mail["X-LetsBe-Order"] == oid
    body = mail.get_content()
    assert "Hello Jane Doe" in body
    assert "https://files.jane.test" in body and "https://cal.jane.test" in body
    row = await _row(sessions, oid)
    assert (row.state, row.attempts) == ("sent", 1) and row.sent_at is not None
    assert await WelcomeMailer(sessions, mailer_settings).send_due() == 0
    assert len(smtp_server.messages) == 1


async def test_a_crash_between_claim_and_sent_resends_once_after_the_lease_with_the_same_message_id(
    sessions, mailer_settings, smtp_server
):
    oid = await _queued(sessions, mailer_settings)
    fresh = await _queued(sessions, mailer_settings)
    # Both were claimed by a mailer that then died; one claim is older than the lease, one is recent.
    async with unit_of_work(sessions) as s:
        await s.execute(
            text(
                "UPDATE hub.welcome_emails SET state = 'sending', attempts = 1, "
                "claimed_at = now() - interval '10 minutes' WHERE order_id = :o"
            ),
            {"o": oid},
        )
        await s.execute(
            text(
                "UPDATE hub.welcome_emails SET state = 'sending', attempts = 1, claimed_at = now() WHERE order_id = :o"
            ),
            {"o": fresh},
        )
    mailer = WelcomeMailer(sessions, mailer_settings, lease_seconds=300)
    assert await mailer.send_due() == 1
    [mail] = smtp_server.messages
    assert mail["Message-ID"] == message_id(oid, mailer_settings.mail_from) == f"<welcome.{oid}@letsbe.test>"
    assert (await _row(sessions, oid)).state == "sent"
    assert (await _row(sessions, fresh)).state == "sending"  # its mailer may still be talking to SMTP


async def test_smtp_errors_are_retried_later_and_a_permanent_refusal_is_recorded(
    sessions, mailer_settings, smtp_server
):
    mailer = WelcomeMailer(sessions, mailer_settings)
    oid = await _queued(sessions, mailer_settings)
    smtp_server.fail_next(1, 451)
    assert await mailer.send_due() == 1
    row = await _row(sessions, oid)
    assert row.state == "pending" and "451" in row.last_error
    assert await mailer.send_due() == 0  # backing off
    async with unit_of_work(sessions) as s:
        await s.execute(text("UPDATE hub.welcome_emails SET next_attempt_at = now()"))
    assert await mailer.send_due() == 1
    assert (await _row(sessions, oid)).state == "sent" and len(smtp_server.messages) == 1

    refused = await _queued(sessions, mailer_settings)
    smtp_server.fail_next(1, 550)
    await mailer.send_due()
    row = await _row(sessions, refused)
    assert row.state == "failed" and "550" in row.last_error
    assert len(smtp_server.messages) == 1


async def test_an_unreachable_smtp_server_leaves_the_email_queued(sessions, mailer_settings, smtp_server):
    oid = await _queued(sessions, mailer_settings)
    dead = mailer_settings.model_copy(update={"smtp_port": 1, "smtp_timeout_seconds": 2})
    assert await WelcomeMailer(sessions, dead).send_due() == 1
    row = await _row(sessions, oid)
    assert row.state == "pending" and row.last_error


async def test_two_mailers_racing_send_each_email_exactly_once(sessions, mailer_settings, smtp_server):
    orders = {await _queued(sessions, mailer_settings) for _ in range(6)}
    a, b = WelcomeMailer(sessions, mailer_settings, batch=2), WelcomeMailer(sessions, mailer_settings, batch=2)

    async def drain(m: WelcomeMailer) -> None:
        while await m.send_due():
            pass

    await asyncio.gather(drain(a), drain(b))
    assert sorted(m["X-LetsBe-Order"] for m in smtp_server.messages) == sorted(orders)
    assert await count(sessions, "SELECT count(*) FROM hub.welcome_emails WHERE state = 'sent'") == 6
