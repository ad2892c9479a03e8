"""Helpers of the console tests: operator accounts and signing in over HTTP."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pyotp
import pytest
from argon2 import PasswordHasher
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from letsbe_hub.auth.scopes import Scope
from letsbe_hub.operators import service
from letsbe_platform.db import unit_of_work

TOTP_KEY = Fernet.generate_key().decode()  # LETSBE_HUB_OPERATOR_TOTP_KEY of the console tests
PASSWORD = "a long enough passphrase"


@pytest.fixture(autouse=True)  # where it is imported: a conftest (its directory) or a test module
def light_password_hashing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """argon2id as in production, at its lowest cost: the hub's default costs ~0.26 s of CPU per hash and per check,
    and the console tests sign in hundreds of times. (A hash carries its own costs, so checking stays the same code.)"""
    monkeypatch.setattr(service, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    service._dummy_hash.cache_clear()
    yield
    service._dummy_hash.cache_clear()


@dataclass
class Account:
    name: str
    password: str
    secret: str

    def code(self) -> str:
        return pyotp.TOTP(self.secret).now()


async def make_operator(
    sessions: async_sessionmaker[AsyncSession], name: str, scopes: list[Scope] | None = None, *, key: str = TOTP_KEY
) -> Account:
    async with unit_of_work(sessions) as session:
        created = await service.create(session, name, PASSWORD, scopes or list(Scope), key=SecretStr(key))
    secret = urllib.parse.parse_qs(urllib.parse.urlparse(created.provisioning_uri).query)["secret"][0]
    return Account(name, PASSWORD, secret)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]*)"', html)
    assert match, "no csrf_token on the page"
    return match.group(1)


async def sign_in(client: httpx.AsyncClient, account: Account, origin: str) -> httpx.Response:
    """Signs in over the form; returns the redirect (303) and leaves the session cookie in the client."""
    return await client.post(
        "/console/sign-in",
        data={"name": account.name, "password": account.password, "code": account.code(), "next": "/console/"},
        headers={"Origin": origin},
    )
