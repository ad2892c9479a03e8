"""Who is on the other end of a relay WebSocket. Refusals happen before the handshake is accepted, so the client
gets HTTP 403 and nothing of the relay (docs/api.md, "Chat relay").

``customer_for_websocket`` is the one place a customer connection is authenticated: a customer app token
(``Authorization: Bearer lbc_…``, for one tenant), or the browser's portal session (the ``letsbe_customer_session``
cookie) with ``?tenant_id=`` naming one of the customer's own tenants. A browser always sends ``Origin``: a page on an
origin outside ``relay_allowed_origins`` is refused whatever it carries (a cookie would otherwise be sent by any site
that opens the socket), and a session cookie without an ``Origin`` is refused too.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, WebSocket, WebSocketException, status

from letsbe_contracts.enums import AgentKind
from letsbe_hub.auth.service import hash_token
from letsbe_hub.customers import service as customers
from letsbe_hub.relay import service
from letsbe_hub.tenants import repository as tenants_repo
from letsbe_hub.web.sessions import CUSTOMER, resolve_session
from letsbe_platform.db import unit_of_work
from letsbe_platform.errors import NotFound

REFUSED = status.WS_1008_POLICY_VIOLATION  # before accept: the client sees HTTP 403


@dataclass(frozen=True)
class RelayPeer:
    """One end of the relay: which tenant's conversation it is in, and who it is (for logs)."""

    tenant_id: uuid.UUID
    who: str


def _bearer(websocket: WebSocket) -> str | None:
    scheme, _, value = websocket.headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def check_origin(websocket: WebSocket) -> None:
    """A page's Origin must be one of ``relay_allowed_origins`` or the hub's own (its portal, at ``public_url``)."""
    origin = websocket.headers.get("origin")
    settings = websocket.app.state.settings
    own = urlsplit(settings.public_url)
    allowed = {o.rstrip("/") for o in settings.relay_allowed_origins} | {f"{own.scheme}://{own.netloc}"}
    if origin is not None and origin.rstrip("/") not in allowed:
        raise WebSocketException(REFUSED, "origin not allowed")


async def customer_for_websocket(websocket: WebSocket) -> RelayPeer:
    check_origin(websocket)
    token = _bearer(websocket)
    cookie = websocket.cookies.get(CUSTOMER.cookie)
    if token is None and cookie:
        return await _customer_by_session(websocket, cookie)
    if token is None:
        raise WebSocketException(REFUSED, "send the app token as 'Authorization: Bearer <token>'")
    async with unit_of_work(websocket.app.state.runtime.sessions) as session:
        tenant_id = await service.tenant_of_app_token(session, token)
    if tenant_id is None:
        raise WebSocketException(REFUSED, "unknown or revoked app token")
    return RelayPeer(tenant_id=tenant_id, who="customer-app")


async def _customer_by_session(websocket: WebSocket, cookie: str) -> RelayPeer:
    if "origin" not in websocket.headers:
        raise WebSocketException(REFUSED, "a session cookie is accepted only from a page (with its Origin)")
    try:
        tenant_id = uuid.UUID(websocket.query_params.get("tenant_id", ""))
    except ValueError:
        raise WebSocketException(REFUSED, "name the tenant: ?tenant_id=<one of your tenants>") from None
    async with unit_of_work(websocket.app.state.runtime.sessions) as session:
        live = (
            await resolve_session(session, CUSTOMER, cookie, websocket.app.state.settings)
            if len(cookie) <= 100
            else None
        )
        if live is None:
            raise WebSocketException(REFUSED, "sign in first: the session is missing, expired or signed out")
        try:
            customer = await customers.get_customer(session, live.principal_id)
            await customers.tenant_of(session, customer, tenant_id)
        except NotFound:  # not theirs, or no such tenant: the same refusal either way
            raise WebSocketException(REFUSED, "no such tenant among yours") from None
    return RelayPeer(tenant_id=tenant_id, who=f"customer:{customer.id}")


async def agent_for_websocket(websocket: WebSocket) -> RelayPeer:
    """The tenant's Safety Wrapper, with its agent API key (the one it heartbeats with)."""
    key = _bearer(websocket)
    if key is None:
        raise WebSocketException(REFUSED, "send the agent API key as 'Authorization: Bearer <key>'")
    async with unit_of_work(websocket.app.state.runtime.sessions) as session:
        found = await tenants_repo.find_credential(session, hash_token(key))
    if found is None or found[0].kind != AgentKind.SAFETY_WRAPPER.value:
        raise WebSocketException(REFUSED, "unknown or revoked agent key, or not the tenant's Safety Wrapper")
    return RelayPeer(tenant_id=found[0].tenant_id, who=f"agent:{found[0].id}")


CustomerPeer = Annotated[RelayPeer, Depends(customer_for_websocket)]
AgentPeer = Annotated[RelayPeer, Depends(agent_for_websocket)]
