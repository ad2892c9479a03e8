"""The tools' admin logins reach the customer through a one-time link in the welcome email, never in the email."""

import re
import uuid

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from hub_testing.orders import insert_order, orders_settings, token
from letsbe_contracts.enums import OrderStatus
from letsbe_hub import models  # noqa: F401 - every table on the metadata
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.notifications.mailer import WelcomeMailer
from letsbe_hub.notifications.service import enqueue_welcome
from letsbe_hub.orders import repository
from letsbe_platform.db import unit_of_work

LINK = re.compile(r"http://hub\.test/api/v1/public/credentials/([A-Za-z0-9_-]+)")
CREDS = [
    {"tool": "nextcloud", "title": "Nextcloud", "url": "https://files.jane.test", "login": "admin",
     "password": "Nc-s3cret-VALUE-0123456789abcdefghijkl"},
    {"tool": "ghost", "title": "Ghost", "url": "https://blog.jane.test", "login": "owner@jane.test",
     "password": "Gh-s3cret-VALUE-0123456789abcdefghijkl"},
]  # fmt: skip


@pytest.fixture
def hub_settings(database_url, nats_url, bus_namespace, stripe_fake, smtp_server):
    return orders_settings(
        database_url, nats_url, bus_namespace, stripe_fake, smtp_server,
        credentials_key=Fernet.generate_key().decode(), public_url="http://hub.test",
    )  # fmt: skip


@pytest.fixture
async def provisioner(sessions) -> dict[str, str]:
    return {"Authorization": f"Bearer {await token(sessions, [Scope.TENANTS_ENROLL], 'provisioner')}"}


async def _fulfilled_with_credentials(sessions, orders_hub, provisioner, settings) -> uuid.UUID:
    oid = await insert_order(
        sessions, status=OrderStatus.FULFILLED, tools=["nextcloud", "ghost", "portainer"], domain="jane.test"
    )
    r = await orders_hub.client.put(
        f"/api/v1/admin/tenants/{oid}/credentials", json={"credentials": CREDS}, headers=provisioner
    )
    assert r.status_code == 204, r.text
    async with unit_of_work(sessions) as session:
        order = await repository.get(session, oid)
        assert await enqueue_welcome(session, order, mail_from=settings.mail_from)
    return oid


async def _mailed_link(sessions, settings, smtp_server) -> tuple[str, str]:
    assert await WelcomeMailer(sessions, settings).send_due() == 1
    body = smtp_server.messages[-1].get_content()
    match = LINK.search(body)
    assert match, body
    return body, match.group(1)


async def test_the_email_links_to_the_logins_and_carries_none_of_them(
    sessions, orders_hub, provisioner, hub_settings, smtp_server
):
    await _fulfilled_with_credentials(sessions, orders_hub, provisioner, hub_settings)
    body, link_token = await _mailed_link(sessions, hub_settings, smtp_server)
    for cred in CREDS:
        assert cred["password"] not in body
    assert "https://blog.jane.test" in body and "portainer" not in body.lower()  # the operator's, not public
    assert len(link_token) >= 43  # 256 random bits: the link is the only authentication
    async with sessions() as s:
        stored = (await s.execute(text("SELECT ciphertext, token_hash FROM hub.credential_reveals"))).one()
    assert CREDS[0]["password"].encode() not in stored.ciphertext  # encrypted at rest
    assert link_token not in stored.token_hash  # only the hash of the link's token


async def test_the_link_reveals_the_logins_once_and_then_answers_404(
    sessions, orders_hub, provisioner, hub_settings, smtp_server
):
    await _fulfilled_with_credentials(sessions, orders_hub, provisioner, hub_settings)
    _, link_token = await _mailed_link(sessions, hub_settings, smtp_server)
    client = orders_hub.client  # no Authorization header: the link is enough
    page = await client.get(f"/api/v1/public/credentials/{link_token}")
    assert page.status_code == 200 and "Show my logins" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert CREDS[0]["password"] not in page.text  # a mail scanner following the link spends nothing
    assert (await client.get(f"/api/v1/public/credentials/{link_token}")).status_code == 200
    shown = await client.post(f"/api/v1/public/credentials/{link_token}")
    assert shown.status_code == 200, shown.text
    assert shown.headers["cache-control"] == "no-store"
    assert shown.json() == {"domain": "jane.test", "credentials": CREDS}
    again = await client.post(f"/api/v1/public/credentials/{link_token}")
    assert again.status_code == 404 and again.headers["content-type"].startswith("application/problem+json")
    assert (await client.get(f"/api/v1/public/credentials/{link_token}")).status_code == 404
    async with sessions() as s:
        assert (await s.execute(text("SELECT ciphertext FROM hub.credential_reveals"))).scalar_one() is None


async def test_a_resend_spends_the_earlier_link_and_a_re_put_after_the_reveal_changes_nothing(
    sessions, orders_hub, provisioner, hub_settings, smtp_server
):
    oid = await _fulfilled_with_credentials(sessions, orders_hub, provisioner, hub_settings)
    _, first = await _mailed_link(sessions, hub_settings, smtp_server)
    async with unit_of_work(sessions) as s:  # the mail is sent again (a crash after SMTP accepted it)
        await s.execute(text("UPDATE hub.welcome_emails SET state = 'pending', next_attempt_at = now()"))
    _, second = await _mailed_link(sessions, hub_settings, smtp_server)
    assert first != second
    assert (await orders_hub.client.post(f"/api/v1/public/credentials/{first}")).status_code == 404
    assert (await orders_hub.client.post(f"/api/v1/public/credentials/{second}")).status_code == 200
    r = await orders_hub.client.put(
        f"/api/v1/admin/tenants/{oid}/credentials", json={"credentials": CREDS}, headers=provisioner
    )
    assert r.status_code == 204
    async with sessions() as s:
        assert (await s.execute(text("SELECT ciphertext FROM hub.credential_reveals"))).scalar_one() is None


async def test_an_expired_link_answers_404(sessions, orders_hub, provisioner, hub_settings, smtp_server):
    await _fulfilled_with_credentials(sessions, orders_hub, provisioner, hub_settings)
    _, link_token = await _mailed_link(sessions, hub_settings, smtp_server)
    async with sessions() as s:
        expires = (await s.execute(text("SELECT expires_at - now() FROM hub.credential_reveals"))).scalar_one()
    assert 71 * 3600 < expires.total_seconds() <= 72 * 3600  # short-lived: three days by default
    async with unit_of_work(sessions) as s:
        await s.execute(text("UPDATE hub.credential_reveals SET expires_at = now() - interval '1 second'"))
    assert (await orders_hub.client.get(f"/api/v1/public/credentials/{link_token}")).status_code == 404
    assert (await orders_hub.client.post(f"/api/v1/public/credentials/{link_token}")).status_code == 404


@pytest.mark.parametrize("guess", ["x", "A" * 43, "a.b", "%00"])
async def test_unknown_tokens_answer_404(orders_hub, guess):
    assert (await orders_hub.client.post(f"/api/v1/public/credentials/{guess}")).status_code == 404


async def test_only_the_provisioner_may_hand_over_logins_and_bad_bodies_store_nothing(
    sessions, orders_hub, provisioner, operator
):
    oid = uuid.uuid4()
    url = f"/api/v1/admin/tenants/{oid}/credentials"
    assert (await orders_hub.client.put(url, json={"credentials": CREDS})).status_code == 401
    assert (await orders_hub.client.put(url, json={"credentials": CREDS}, headers=operator)).status_code == 403
    for bad in (
        {"credentials": [{**CREDS[0], "password": "short"}]},
        {"credentials": [{**CREDS[0], "url": "javascript:alert(1)"}]},
        {"credentials": CREDS, "extra": 1},
    ):
        r = await orders_hub.client.put(url, json=bad, headers=provisioner)
        assert r.status_code == 422 and CREDS[0]["password"] not in r.text
    async with sessions() as s:
        assert (await s.execute(text("SELECT count(*) FROM hub.credential_reveals"))).scalar_one() == 0
