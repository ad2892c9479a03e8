"""The Secrets Proxy app factory (tenant side: no Postgres, no NATS; it talks to the Hub over HTTPS).

Plain Starlette with the services' shared behaviour (``letsbe_platform.asgi.create_agent_app``); its OpenAPI
document comes from ``openapi.py``, loaded only when asked for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette

from letsbe_agent.runtime import AgentRuntime, agent_of, start_agent
from letsbe_contracts.enums import AgentKind
from letsbe_platform.asgi import Runtime, create_agent_app, runtime
from letsbe_secrets_proxy import __version__
from letsbe_secrets_proxy.config import SecretsProxySettings
from letsbe_secrets_proxy.proxy import endpoints as llm
from letsbe_secrets_proxy.proxy import upstream_key


def __getattr__(name: str) -> Any:
    if name == "ROUTERS":  # the FastAPI description of the routes (the contract tests read it as for every service)
        from letsbe_secrets_proxy.openapi import routers

        return routers()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def start_workers(rt: Runtime, settings: SecretsProxySettings) -> None:
    """Background work of the agent (registration, heartbeats, command pulls) is wired here."""
    start_agent(rt, settings, AgentKind.SECRETS_PROXY, __version__)  # letsbe_agent.runtime.agent_of(rt) finds it


async def _rotate_llm_key(app: Starlette, agent: AgentRuntime, settings: SecretsProxySettings) -> dict[str, Any]:
    """rotate-credential "llm-key" (proxy/upstream_key.py)."""
    proxy = getattr(app.state, "proxy", None)
    if proxy is None or settings.state_dir is None:
        raise RuntimeError("the proxy is not running yet")
    rendered = settings.upstream_api_key.get_secret_value() if settings.upstream_api_key else None
    return await upstream_key.rotate(agent, proxy, settings.state_dir, rendered)


def _openapi() -> dict[str, Any]:
    from letsbe_secrets_proxy.openapi import document

    return document()


def create_app(settings: SecretsProxySettings | None = None) -> Starlette:
    settings = settings or SecretsProxySettings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with runtime(settings, database=False, bus=False) as rt:
            app.state.runtime = rt
            app.state.settings = settings
            start_workers(rt, settings)
            agent = agent_of(rt)
            if agent is not None:
                agent.rotators["llm-key"] = lambda: _rotate_llm_key(app, agent, settings)
            async with llm.proxy_lifespan(app):
                yield

    # The LLM routes read their bodies themselves, bounded by max_request_bytes, and answer a 413 an OpenAI client
    # can read (with its ``error`` member).
    return create_agent_app(lifespan=lifespan, routes=llm.ROUTES, openapi=_openapi,
                            body_limits=dict.fromkeys(llm.LLM_PATHS))
