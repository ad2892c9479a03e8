"""The customer portal: server-rendered pages at ``/portal`` on the customer API's data.

Every form posts here with the session's CSRF token (sign-in forms, before a session exists, are checked for
their origin). Live order progress is the customer API's SSE stream, read by ``static/portal.js``.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import TypeAdapter, ValidationError

from letsbe_contracts import OrderStatus
from letsbe_hub.credentials import service as credentials
from letsbe_hub.customers import service
from letsbe_hub.customers.dependencies import CurrentCustomer, CustomerWriting
from letsbe_hub.customers.endpoints import invoices_of, start_sign_in
from letsbe_hub.customers.models import Customer
from letsbe_hub.orders.schemas import Email
from letsbe_hub.orders.wiring import OrdersRuntimeDep
from letsbe_hub.payments.errors import PaymentProviderError, PaymentsNotConfigured
from letsbe_hub.web import sessions
from letsbe_hub.web.csrf import SameOrigin, csrf_token, read_form
from letsbe_hub.web.sessions import CUSTOMER, CustomerSession
from letsbe_hub.web.templates import render
from letsbe_platform.errors import NotFound
from letsbe_platform.web import SessionDep

router = APIRouter(prefix="/portal", include_in_schema=False)
Token = Annotated[str, Path(max_length=100)]
EMAIL = TypeAdapter(Email)


def page(request: Request, name: str, customer: Customer | None, web=None, **context) -> HTMLResponse:
    return render(
        request,
        f"portal/{name}",
        {"customer": customer, "csrf_token": csrf_token(web) if web is not None else "", **context},
    )


@router.get("", response_class=RedirectResponse)
@router.get("/", response_class=RedirectResponse)
async def home() -> RedirectResponse:
    return RedirectResponse("/portal/orders", status_code=303)


# --- sign-in -------------------------------------------------------------------------------------------------------


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_form(request: Request) -> HTMLResponse:
    return page(request, "sign_in.html", None)


@router.post("/sign-in", response_class=HTMLResponse, dependencies=[SameOrigin])
async def sign_in(request: Request, session: SessionDep, background: BackgroundTasks) -> HTMLResponse:
    email = (await read_form(request)).get("email", "")
    try:
        email = EMAIL.validate_python(email)
    except ValidationError:
        return render(
            request,
            "portal/sign_in.html",
            {"customer": None, "csrf_token": "", "error": "That does not look like an email address."},
            status_code=422,
        )
    await start_sign_in(request, session, email, background)
    return page(request, "sign_in_sent.html", None, detail=service.SIGN_IN_ANSWER)


@router.get("/sign-in/{token}", response_class=HTMLResponse)
async def sign_in_link(token: Token, request: Request, session: SessionDep) -> HTMLResponse:
    """One button that signs in: mail scanners that open links do not use the link up (only the POST does)."""
    if not await service.link_is_live(session, token):
        raise NotFound("This sign-in link is unknown, expired or already used. Ask for a new one.")
    return page(request, "sign_in_confirm.html", None, token=token)


@router.post("/sign-in/{token}", dependencies=[SameOrigin])
async def use_sign_in_link(token: Token, request: Request, session: SessionDep) -> Response:
    customer = await service.consume_link(session, token)
    if customer is None:
        raise NotFound("This sign-in link is unknown, expired or already used. Ask for a new one.")
    settings = request.app.state.settings
    _, new_token = await sessions.start_session(
        session, CUSTOMER, customer.id, settings, replaces=request.cookies.get(CUSTOMER.cookie)
    )
    response = RedirectResponse("/portal/orders", status_code=303)
    sessions.set_session_cookie(response, request, CUSTOMER, new_token, settings)
    return response


@router.post("/sign-out")
async def sign_out(request: Request, session: SessionDep, _: CustomerWriting, web: CustomerSession) -> Response:
    await sessions.revoke_session(session, web.id)
    response = RedirectResponse("/portal/sign-in", status_code=303)
    sessions.clear_session_cookie(response, request, CUSTOMER, request.app.state.settings)
    return response


@router.post("/sign-out-everywhere")
async def sign_out_everywhere(request: Request, session: SessionDep, customer: CustomerWriting) -> Response:
    await sessions.revoke_all_sessions(session, CUSTOMER, customer.id)
    response = RedirectResponse("/portal/sign-in", status_code=303)
    sessions.clear_session_cookie(response, request, CUSTOMER, request.app.state.settings)
    return response


# --- pages ---------------------------------------------------------------------------------------------------------


@router.get("/orders", response_class=HTMLResponse)
async def orders(
    request: Request, session: SessionDep, customer: CurrentCustomer, web: CustomerSession
) -> HTMLResponse:
    views = [await service.order_view(session, o) for o in await service.orders_of(session, customer)]
    return page(request, "orders.html", customer, web, orders=views)


@router.get("/orders/{order_id}", response_class=HTMLResponse)
async def order(
    order_id: uuid.UUID, request: Request, session: SessionDep, customer: CurrentCustomer, web: CustomerSession
) -> HTMLResponse:
    found = await service.order_of(session, customer, order_id)
    view = await service.order_view(session, found)
    tenant = None
    if found.tenant_id is not None or view.status == OrderStatus.FULFILLED:
        try:
            mine = await service.tenant_of(session, customer, found.tenant_id or found.id)
            tenant = await service.tenant_view(session, mine, request.app.state.settings)
        except NotFound:
            tenant = None
    tools = tenant.tools if tenant else service.tool_links(found.domain, list(found.tools))
    return page(request, "order.html", customer, web, order=view, tenant=tenant, tools=tools)


@router.get("/tenants/{tenant_id}", response_class=HTMLResponse)
async def tenant(
    tenant_id: uuid.UUID, request: Request, session: SessionDep, customer: CurrentCustomer, web: CustomerSession
) -> HTMLResponse:
    found = await service.tenant_of(session, customer, tenant_id)
    settings = request.app.state.settings
    view = await service.tenant_view(session, found, settings)
    used = await service.token_usage(session, found, settings)
    return page(request, "tenant.html", customer, web, tenant=view, usage=used)


@router.get("/invoices", response_class=HTMLResponse)
async def invoices(
    request: Request, rt: OrdersRuntimeDep, customer: CurrentCustomer, web: CustomerSession
) -> HTMLResponse:
    error = None
    try:
        found = await invoices_of(rt, customer.email)
    except (PaymentsNotConfigured, PaymentProviderError) as exc:
        found, error = [], exc.detail
    return page(request, "invoices.html", customer, web, invoices=found, error=error)


@router.post("/orders/{order_id}/credentials", response_class=HTMLResponse)
async def reveal_credentials(
    order_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    customer: CustomerWriting,
    web: CustomerSession,
) -> HTMLResponse:
    found = await service.order_of(session, customer, order_id)
    creds = await credentials.reveal_for_order(session, found.id, request.app.state.settings)
    return page(request, "credentials.html", customer, web, order=found, credentials=creds)


routers = [router]
