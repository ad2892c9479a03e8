"""Customers in tests: sign in through the emailed link, as a customer would (API tests and browser tests)."""

from __future__ import annotations

import re
from email.message import EmailMessage

import httpx

from letsbe_fakes.smtp import FakeSmtp
from letsbe_platform.testing import eventually

LINK = re.compile(r"(https?://\S+/portal/sign-in/([A-Za-z0-9_-]{43}))")


def sign_in_links(smtp: FakeSmtp, email: str) -> list[str]:
    """The sign-in links emailed to ``email`` so far, oldest first."""
    out = []
    for m in list(smtp.messages):
        if m["To"] == email and m["Subject"] == "Your LetsBe sign-in link":
            found = LINK.search(m.get_content())
            assert found, m.get_content()
            out.append(found.group(1))
    return out


async def emailed_link(smtp: FakeSmtp, email: str, *, after: int = 0) -> str:
    """Wait for a sign-in link to ``email`` beyond the first ``after`` ones, and return it."""
    await eventually(lambda: len(sign_in_links(smtp, email)) > after, what=f"a sign-in link for {email}", timeout=20)
    return sign_in_links(smtp, email)[after]


async def sign_in(client: httpx.AsyncClient, smtp: FakeSmtp, email: str) -> str:
    """Ask for a link, open it and press "Sign in": the client holds the session cookie. Returns the CSRF token."""
    before = len(sign_in_links(smtp, email))
    r = await client.post("/api/v1/customer/sign-in", json={"email": email})
    assert r.status_code == 202, r.text
    link = await emailed_link(smtp, email, after=before)
    r = await client.post(path_of(link), headers={"Origin": str(client.base_url).rstrip("/")})
    assert r.status_code == 303 and r.headers["location"] == "/portal/orders", r.text
    me = await client.get("/api/v1/customer/me")
    assert me.status_code == 200, me.text
    return me.json()["csrf_token"]


def path_of(link: str) -> str:
    return "/" + link.split("/", 3)[3]


def message_to(smtp: FakeSmtp, email: str) -> list[EmailMessage]:
    return [m for m in smtp.messages if m["To"] == email]
