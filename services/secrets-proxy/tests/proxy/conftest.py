"""Fixtures: the fake OpenAI upstream on loopback, and the proxy in-process pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from cryptography.fernet import Fernet
from starlette.applications import Starlette

from letsbe_agent.usage import UsageLedger
from letsbe_fakes import LoopbackServer
from letsbe_fakes.openai import FakeOpenAI
from letsbe_secrets_proxy.app import create_app
from letsbe_secrets_proxy.config import SecretsProxySettings
from letsbe_secrets_proxy.proxy.registry import write_store

SENTINEL = "lbsp-sentinel-not-a-real-key"
# The tenant's registry for these tests (names as the Safety Wrapper would store them).
SECRETS = {
    "db_password": "Sup3r/S3cret+pw!",
    "nextcloud_admin": "nc-admin-7f3a9c2e1b",
    "smtp_password": "smtp-P@ss w0rd&more",
}


@pytest.fixture
def upstream() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    with LoopbackServer(fake.app) as srv:
        fake.url = srv.url  # type: ignore[attr-defined]
        yield fake


@dataclass
class Proxy:
    client: httpx.AsyncClient
    app: Starlette
    upstream: FakeOpenAI
    ledger_path: Path
    settings: SecretsProxySettings

    async def usage(self) -> list[tuple[str, int, int, int]]:
        """What the shared ledger holds, as the reporting agent will see it once the hour has closed."""
        await self.app.state.proxy.usage.flush()  # what the once-a-second batch would have written by now
        ledger = UsageLedger(self.ledger_path)
        try:
            reports = ledger.pending(now=datetime.now(UTC) + timedelta(hours=1))
        finally:
            ledger.close()
        return [(ln.model, ln.tokens_in, ln.tokens_out, ln.requests) for r in reports for ln in r.lines]

    async def chat(self, body: dict[str, Any], **kw: Any) -> httpx.Response:
        return await self.client.post("/v1/chat/completions", json={"model": "gpt-4o-mini", **body}, **kw)

    async def responses(self, body: dict[str, Any], **kw: Any) -> httpx.Response:
        return await self.client.post("/v1/responses", json={"model": "gpt-4o-mini", **body}, **kw)


def proxy_settings(tmp_path: Path, upstream: FakeOpenAI, **extra: Any) -> SecretsProxySettings:
    key = Fernet.generate_key().decode()
    write_store(tmp_path / "secrets.enc", key, SECRETS)
    return SecretsProxySettings(
        sentinel_key=SENTINEL, upstream_base_url=upstream.url + "/v1",  # type: ignore[attr-defined]
        upstream_api_key=upstream.api_key, secrets_path=tmp_path / "secrets.enc", secrets_key=key,
        usage_ledger_path=tmp_path / "usage.sqlite3", log_json=False, **extra,
    )


@asynccontextmanager
async def start_proxy(settings: SecretsProxySettings, upstream: FakeOpenAI) -> AsyncIterator[Proxy]:
    app = create_app(settings)
    async with LifespanManager(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sp",
                                     headers={"Authorization": f"Bearer {SENTINEL}"}) as client:
            yield Proxy(client, app, upstream, settings.usage_ledger_path, settings)


@pytest.fixture
async def proxy(tmp_path: Path, upstream: FakeOpenAI) -> AsyncIterator[Proxy]:
    async with start_proxy(proxy_settings(tmp_path, upstream), upstream) as p:
        yield p


@pytest.fixture
def another_proxy(tmp_path: Path, upstream: FakeOpenAI) -> Any:
    """``async with another_proxy(**settings) as p``: a proxy with different settings."""

    def start(**overrides: Any) -> Any:
        settings = proxy_settings(tmp_path, upstream).model_copy(update=overrides)
        return start_proxy(settings, upstream)

    return start
