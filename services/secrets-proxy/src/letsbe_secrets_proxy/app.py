"""The Secrets Proxy app factory (tenant side: no Postgres, no NATS; it talks to the Hub over HTTPS)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from letsbe_agent.runtime import start_agent
from letsbe_contracts.enums import AgentKind
from letsbe_platform.web import Runtime, create_service_app, runtime
from letsbe_secrets_proxy import __version__
from letsbe_secrets_proxy.config import SecretsProxySettings
from letsbe_secrets_proxy.proxy import endpoints as llm

ROUTERS: list = [llm.router]


def start_workers(rt: Runtime, settings: SecretsProxySettings) -> None:
    """Background work of the agent (registration, heartbeats, command pulls) is wired here."""
    start_agent(rt, settings, AgentKind.SECRETS_PROXY, __version__)  # letsbe_agent.runtime.agent_of(rt) finds it


def create_app(settings: SecretsProxySettings | None = None) -> FastAPI:
    settings = settings or SecretsProxySettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime(settings, database=False, bus=False) as rt:
            app.state.runtime = rt
            app.state.settings = settings
            start_workers(rt, settings)
            yield

    return create_service_app(
        title="LetsBe Secrets Proxy",
        version=__version__,
        lifespan=lifespan,
        routers=ROUTERS,
        # The LLM routes read their bodies themselves, bounded by max_request_bytes, and answer a 413 an OpenAI
        # client can read (with its ``error`` member).
        body_limits=dict.fromkeys(llm.LLM_PATHS),
        dependencies=False,
    )
