"""The Safety Wrapper app factory (tenant side: no Postgres, no NATS; it talks to the Hub over HTTPS)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from letsbe_agent.runtime import start_agent
from letsbe_contracts.enums import AgentKind
from letsbe_platform.web import Runtime, create_service_app, runtime
from letsbe_safety_wrapper import __version__
from letsbe_safety_wrapper.config import SafetyWrapperSettings
from letsbe_safety_wrapper.tools import endpoints as tools

ROUTERS: list = [tools.router]


def start_workers(rt: Runtime, settings: SafetyWrapperSettings) -> None:
    """Background work of the agent (registration, heartbeats, command pulls) is wired here."""
    agent = start_agent(rt, settings, AgentKind.SAFETY_WRAPPER, __version__)  # letsbe_agent.runtime.agent_of(rt)
    if agent is not None and settings.chat_url:
        from letsbe_safety_wrapper.chat.relay import ChatRelay  # only when used: websockets is 2 MB resident

        relay = ChatRelay(settings, agent)
        rt.start("chat-relay", relay.run(), relay.stop)


def create_app(settings: SafetyWrapperSettings | None = None) -> FastAPI:
    settings = settings or SafetyWrapperSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime(settings, database=False, bus=False) as rt:
            app.state.runtime = rt
            app.state.settings = settings
            start_workers(rt, settings)
            yield

    return create_service_app(title="LetsBe Safety Wrapper", version=__version__, lifespan=lifespan, routers=ROUTERS,
                              # The gate reads the call itself, bounded, so it can refuse and audit an oversized one.
                              body_limits={"/api/v1/tools/execute": None}, dependencies=False)
