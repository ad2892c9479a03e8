"""The configured bootstrap admin token is written once, however many hub replicas start at the same moment."""

from __future__ import annotations

import asyncio
import contextlib

from asgi_lifespan import LifespanManager
from sqlalchemy import text

from letsbe_hub.app import create_app
from letsbe_hub.auth.service import hash_token
from letsbe_hub.config import HubSettings

TOKEN = "lbh_bootstrap-0123456789abcdef0123456789abcdef"


async def test_replicas_starting_together_all_start_and_write_the_token_once(
    database_url, nats_url, bus_namespace, sessions
):
    settings = HubSettings.model_validate(
        {
            "DATABASE_URL": database_url,
            "NATS_URL": nats_url,
            "LETSBE_BUS_NAMESPACE": bus_namespace,
            "log_json": False,
            "bootstrap_admin_token": TOKEN,
        }
    )
    async with contextlib.AsyncExitStack() as stack:
        managers = [LifespanManager(create_app(settings), startup_timeout=60, shutdown_timeout=30) for _ in range(4)]
        await asyncio.gather(*(stack.enter_async_context(m) for m in managers))  # none may fail to start
    async with sessions() as s:
        rows = (
            await s.execute(text("SELECT count(*) FROM hub.api_tokens WHERE token_hash = :h"), {"h": hash_token(TOKEN)})
        ).scalar_one()
    assert rows == 1
