"""HTTP of the llm context: the relay (/api/v1/llm/v1/…, a tenant's relay key), the admin routes that issue a
tenant's key and show its metered usage, and the agent route its Secrets Proxy rotates the key with."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated

import httpx
from fastapi import APIRouter, Depends, FastAPI, Query, Request, status
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from letsbe_contracts.agent import LLM_RELAY_PATH
from letsbe_contracts.enums import AgentKind
from letsbe_hub.auth.dependencies import Authorized
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.llm import service
from letsbe_hub.llm.relay import Relay
from letsbe_hub.llm.schemas import IssuedLlmKey, LlmUsageView
from letsbe_hub.tenants.auth import CurrentAgent, any_scope
from letsbe_platform import tls
from letsbe_platform.db import unit_of_work
from letsbe_platform.errors import Forbidden, ServiceUnavailable, Unauthorized
from letsbe_platform.web import SessionDep, problems

RELAY_PATHS = tuple(LLM_RELAY_PATH + p for p in ("/chat/completions", "/responses"))


@asynccontextmanager
async def relay_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Runs inside the app's lifespan (FastAPI merges router lifespans): settings and runtime are there."""
    settings = app.state.settings
    sessions = app.state.runtime.sessions

    async def meter(tenant_id: uuid.UUID, model: str, tokens_in: int, tokens_out: int) -> None:
        async with unit_of_work(sessions) as session:
            await service.meter(session, tenant_id, model, tokens_in, tokens_out)

    timeout = httpx.Timeout(settings.llm_upstream_timeout_seconds, connect=10)
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, verify=tls.client_context()) as client:
        key = settings.llm_upstream_api_key
        relay = app.state.llm_relay = Relay(client, settings.llm_upstream_base_url,
                                            key.get_secret_value() if key else None, meter)
        try:
            yield
        finally:
            await relay.drain()


relay_router = APIRouter(prefix=LLM_RELAY_PATH, tags=["llm"], lifespan=relay_lifespan)
admin_router = APIRouter(prefix="/api/v1/admin/tenants", tags=["llm"])
agent_router = APIRouter(prefix="/api/v1/tenant", tags=["llm"])
_bearer = HTTPBearer(scheme_name="tenantLlmKey", auto_error=False, description="The tenant's LLM relay key (lbl_…)")


async def _tenant(request: Request,
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> uuid.UUID:
    if credentials is None or not credentials.credentials:
        raise Unauthorized("Send the tenant's relay key as 'Authorization: Bearer <key>'.")
    async with unit_of_work(request.app.state.runtime.sessions) as session:  # short: the call may stream minutes
        tenant_id = await service.tenant_of_key(session, credentials.credentials)
    if tenant_id is None:
        raise Unauthorized("Unknown, expired or revoked relay key.")
    return tenant_id


async def _relay(request: Request) -> Relay:
    relay: Relay | None = getattr(request.app.state, "llm_relay", None)
    if relay is None:
        raise ServiceUnavailable("The LLM relay is starting.")
    return relay


RelayTenant = Annotated[uuid.UUID, Depends(_tenant)]
RelayDep = Annotated[Relay, Depends(_relay)]


@relay_router.post("/chat/completions", name="chat_completions")
async def chat_completions(request: Request, tenant_id: RelayTenant, relay: RelayDep) -> Response:
    """OpenAI Chat Completions with the platform's key, metered for the tenant whose key this is."""
    return await relay.forward(tenant_id, "/chat/completions", request)


@relay_router.post("/responses", name="responses")
async def responses(request: Request, tenant_id: RelayTenant, relay: RelayDep) -> Response:
    """OpenAI Responses with the platform's key, metered for the tenant whose key this is."""
    return await relay.forward(tenant_id, "/responses", request)


@admin_router.post("/{tenant_id}/llm-key", name="issue_llm_key", status_code=status.HTTP_201_CREATED)
async def issue_llm_key(
    tenant_id: uuid.UUID, request: Request, session: SessionDep, _: Authorized(Scope.TENANTS_ENROLL)
) -> IssuedLlmKey:
    """A new relay key for the tenant (shown once; the previous one works for the grace period)."""
    return await service.issue_key(session, tenant_id, request.app.state.settings)


@admin_router.post("/{tenant_id}/llm-key/revoke", name="revoke_llm_keys", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_llm_keys(tenant_id: uuid.UUID, session: SessionDep, _: Authorized(Scope.FLEET_WRITE)) -> None:
    """Every relay key of the tenant stops working now."""
    await service.revoke_keys(session, tenant_id)


@admin_router.get("/{tenant_id}/llm-usage", name="llm_usage")
async def llm_usage(
    tenant_id: uuid.UUID,
    session: SessionDep,
    _: any_scope(Scope.FLEET_READ, Scope.TENANTS_ENROLL),
    since: Annotated[datetime | None, Query(description="From this hour on (default: the last 30 days).")] = None,
) -> LlmUsageView:
    """What the relay forwarded for the tenant, per hour and model."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return await service.usage_view(session, tenant_id, since or datetime.now(UTC) - timedelta(days=30))


@agent_router.post("/llm-key", name="rotate_llm_key", status_code=status.HTTP_201_CREATED, responses=problems(403))
async def rotate_llm_key(agent: CurrentAgent, request: Request, session: SessionDep) -> IssuedLlmKey:
    """The tenant's Secrets Proxy takes a new relay key for itself (its rotate-credential command)."""
    if agent.kind is not AgentKind.SECRETS_PROXY:
        raise Forbidden("Only the tenant's Secrets Proxy holds the relay key.")
    return await service.issue_key(session, agent.tenant_id, request.app.state.settings)


routers = [relay_router, admin_router, agent_router]
