"""HTTP and WebSocket of the relay context: the customer's socket, the tenant agent's socket (outbound from the
tenant: tenants are not reachable inbound), and the admin routes that issue and revoke customer app tokens."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, WebSocket, status

from letsbe_hub.auth.dependencies import Authorized
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.relay import service
from letsbe_hub.relay.auth import AgentPeer, CustomerPeer
from letsbe_hub.relay.broker import RelayBroker
from letsbe_hub.relay.connection import RelayConnection
from letsbe_hub.relay.schemas import AppTokenCreate, IssuedAppToken
from letsbe_platform.web import SessionDep, problems

CUSTOMER_WS_PATH = "/api/v1/customer/ws"
TENANT_WS_PATH = "/api/v1/tenant/relay/ws"


@asynccontextmanager
async def relay_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Runs inside the app's lifespan (FastAPI merges router lifespans): settings and runtime are there."""
    rt = app.state.runtime
    broker = app.state.relay_broker = RelayBroker(rt.bus, app.state.settings)
    await broker.ensure_stream()
    yield


ws_router = APIRouter(tags=["relay"], lifespan=relay_lifespan)
admin_router = APIRouter(prefix="/api/v1/admin/tenants", tags=["relay"])


@ws_router.websocket(CUSTOMER_WS_PATH, name="customer_ws")
async def customer_ws(websocket: WebSocket, peer: CustomerPeer) -> None:
    """The customer's app (or browser) talks to their tenant's AI agent (protocol: docs/api.md, "Chat relay")."""
    app = websocket.app
    await RelayConnection(websocket, app.state.relay_broker, peer, inbound="to-agent", outbound="to-customer").run(
        app.state.runtime.stopping)


@ws_router.websocket(TENANT_WS_PATH, name="tenant_relay_ws")
async def tenant_ws(websocket: WebSocket, peer: AgentPeer) -> None:
    """The tenant's Safety Wrapper keeps this open: its customers' messages in, its AI agent's answers out."""
    app = websocket.app
    await RelayConnection(websocket, app.state.relay_broker, peer, inbound="to-customer", outbound="to-agent").run(
        app.state.runtime.stopping)


@admin_router.post("/{tenant_id}/customer-app-tokens", name="issue_customer_app_token",
                   status_code=status.HTTP_201_CREATED, responses=problems(404))
async def issue_app_token(
    tenant_id: uuid.UUID, body: AppTokenCreate, session: SessionDep, _: Authorized(Scope.FLEET_WRITE)
) -> IssuedAppToken:
    """A new app token for the tenant's customer (shown once): it opens the chat relay to this tenant only."""
    return await service.issue_app_token(session, tenant_id, body.label)


@admin_router.delete("/{tenant_id}/customer-app-tokens/{token_id}", name="revoke_customer_app_token",
                     status_code=status.HTTP_204_NO_CONTENT, responses=problems(404))
async def revoke_app_token(
    tenant_id: uuid.UUID, token_id: uuid.UUID, session: SessionDep, _: Authorized(Scope.FLEET_WRITE)
) -> None:
    """The app token stops opening new relay connections now."""
    await service.revoke_app_token(session, tenant_id, token_id)


routers = [ws_router, admin_router]
