"""The Secrets Proxy app factory (tenant side: no Postgres, no NATS; it talks to the Hub over HTTPS)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from letsbe_agent.runtime import AgentRuntime, agent_of, start_agent
from letsbe_contracts.enums import AgentKind
from letsbe_platform.web import Runtime, create_service_app, runtime
from letsbe_secrets_proxy import __version__
from letsbe_secrets_proxy.config import SecretsProxySettings
from letsbe_secrets_proxy.proxy import endpoints as llm
from letsbe_secrets_proxy.proxy import upstream_key

ROUTERS: list = [llm.router]


def start_workers(rt: Runtime, settings: SecretsProxySettings) -> None:
    """Background work of the agent (registration, heartbeats, command pulls) is wired here."""
    start_agent(rt, settings, AgentKind.SECRETS_PROXY, __version__)  # letsbe_agent.runtime.agent_of(rt) finds it


async def _rotate_llm_key(app: FastAPI, agent: AgentRuntime, settings: SecretsProxySettings) -> dict[str, Any]:
    """rotate-credential "llm-key" (proxy/upstream_key.py)."""
    proxy = getattr(app.state, "proxy", None)
    if proxy is None or settings.state_dir is None:
        raise RuntimeError("the proxy is not running yet")
    rendered = settings.upstream_api_key.get_secret_value() if settings.upstream_api_key else None
    return await upstream_key.rotate(agent, proxy, settings.state_dir, rendered)


def create_app(settings: SecretsProxySettings | None = None) -> FastAPI:
    settings = settings or SecretsProxySettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime(settings, database=False, bus=False) as rt:
            app.state.runtime = rt
            app.state.settings = settings
            start_workers(rt, settings)
            agent = agent_of(rt)
            if agent is not None:
                agent.rotators["llm-key"] = lambda: _rotate_llm_key(app, agent, settings)
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
