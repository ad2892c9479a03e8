"""The provisioner hands over the tools' admin logins; the customer sees them once through the emailed link."""

from __future__ import annotations

import html
import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status
from fastapi.responses import HTMLResponse

from letsbe_hub.auth.dependencies import Authorized
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.credentials import service
from letsbe_hub.credentials.schemas import CredentialsIn, CredentialsOut
from letsbe_hub.orders import repository as orders
from letsbe_platform.web import SessionDep

admin_router = APIRouter(prefix="/api/v1/admin/tenants", tags=["tenants"])
public_router = APIRouter(prefix="/api/v1/public/credentials", tags=["public"])
# A token_urlsafe(32); anything else cannot match and gets the same 404 as a used link.
Token = Annotated[str, Path(max_length=100)]
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}


@admin_router.put("/{tenant_id}/credentials", name="put_credentials", status_code=status.HTTP_204_NO_CONTENT)
async def put_credentials(
    tenant_id: uuid.UUID,
    body: CredentialsIn,
    request: Request,
    session: SessionDep,
    _: Authorized(Scope.TENANTS_ENROLL),
) -> Response:
    """The tools' admin logins the provisioner created (tenant id = order id). Never returned by any admin route."""
    await service.store(session, tenant_id, body, request.app.state.settings)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@public_router.get("/{token}", name="confirm", response_class=HTMLResponse)
async def confirm(token: Token, session: SessionDep) -> HTMLResponse:
    """A page with one button: mail scanners that follow links do not use the link up (only the POST does)."""
    await service.check(session, token)
    page = (
        "<!doctype html><meta charset=utf-8><title>Your LetsBe logins</title>"
        "<p>Your tools' admin logins are shown <b>once</b>. Have your password manager ready.</p>"
        f'<form method=post action="{html.escape(token)}"><button>Show my logins</button></form>'
    )
    # No script, no framing, the form posts only here.
    csp = "default-src 'none'; form-action 'self'; frame-ancestors 'none'"
    return HTMLResponse(page, headers={**NO_STORE, "Content-Security-Policy": csp})


@public_router.post("/{token}", name="reveal")
async def reveal(token: Token, request: Request, response: Response, session: SessionDep) -> CredentialsOut:
    """The logins, once: the link is spent by this answer (then 404). Needs no other authentication."""
    response.headers.update(NO_STORE)
    order_id, creds = await service.reveal(session, token, request.app.state.settings)
    order = await orders.get(session, order_id)
    return CredentialsOut(domain=order.domain if order else None, credentials=creds)


routers = [admin_router, public_router]
