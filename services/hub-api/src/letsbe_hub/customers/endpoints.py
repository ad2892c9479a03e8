"""The customer API (``/api/v1/customer``): JSON for the browser (session cookie) and the customer's app.

Every route below answers only about the signed-in customer's own orders and tenants; another customer's id is
404, the same as an id that does not exist. POSTs need the session's CSRF token (``X-CSRF-Token``, from ``/me``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import aiosmtplib
from fastapi import APIRouter, BackgroundTasks, Request, Response, status
from sse_starlette import EventSourceResponse

from letsbe_hub.auth.dependencies import Authorized
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.config import HubSettings
from letsbe_hub.credentials import service as credentials
from letsbe_hub.credentials.schemas import CredentialsOut
from letsbe_hub.customers import service
from letsbe_hub.customers.dependencies import CurrentCustomer, CustomerWriting
from letsbe_hub.customers.models import PushDevice
from letsbe_hub.customers.schemas import (
    CustomerOrder,
    CustomerTenant,
    InvoiceOut,
    Me,
    PushDeviceCreate,
    PushDeviceOut,
    SignInAccepted,
    SignInRequest,
    TenantPushDevice,
    TokenUsage,
)
from letsbe_hub.notifications.mailer import smtp_send
from letsbe_hub.orders.stream import order_events
from letsbe_hub.orders.wiring import OrdersRuntimeDep
from letsbe_hub.payments.errors import PaymentsNotConfigured
from letsbe_hub.web import limits, sessions
from letsbe_hub.web.csrf import csrf_token
from letsbe_hub.web.sessions import CUSTOMER, CustomerSession
from letsbe_platform.logging import get_logger
from letsbe_platform.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from letsbe_platform.web import After, LastEventId, SessionDep, problems, sse_cursor

log = get_logger(__name__)

router = APIRouter(prefix="/api/v1/customer", tags=["customer"])


# --- sign-in -------------------------------------------------------------------------------------------------------


async def _mail_link(to: str, link: str, settings: HubSettings) -> None:
    """Runs after the answer is sent: the answer's timing says nothing about whether the email exists."""
    if not settings.smtp_host:
        log.warning("sign-in link not sent: no SMTP server is configured (LETSBE_HUB_SMTP_HOST)")
        return
    try:
        await smtp_send(service.sign_in_email(to, link, settings), settings)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        log.warning("sign-in link not sent", error=f"{type(exc).__name__}: {exc}"[:300])
    else:
        log.info("sign-in link sent")


async def start_sign_in(request: Request, session: SessionDep, email: str, background: BackgroundTasks) -> None:
    """Shared by the API and the portal's form: the same outcome whatever the email, except the per-address 429."""
    settings: HubSettings = request.app.state.settings
    await limits.hit(
        session,
        f"sign-in:{limits.client_address(request)}",
        limit=settings.sign_in_requests_per_ip_per_minute,
        window_seconds=60,
        now=datetime.now(UTC),
        what="sign-in requests",
    )
    link = await service.request_sign_in(session, email, settings)
    if link is not None:
        background.add_task(_mail_link, service.normalize_email(email), link, settings)


@router.post(
    "/sign-in",
    name="sign_in",
    status_code=status.HTTP_202_ACCEPTED,
    responses=problems(429),
    summary="Email a one-time sign-in link (the same answer whether or not the email has an account)",
)
async def sign_in(
    body: SignInRequest, request: Request, session: SessionDep, background: BackgroundTasks
) -> SignInAccepted:
    await start_sign_in(request, session, body.email, background)
    return SignInAccepted(detail=service.SIGN_IN_ANSWER)


@router.get("/me", name="me", summary="The signed-in customer and the CSRF token of this session")
async def me(customer: CurrentCustomer, web: CustomerSession) -> Me:
    return Me(email=customer.email, csrf_token=csrf_token(web), session_expires_at=web.expires_at)


# 403: a POST without this session's CSRF token, or from another site.
@router.post(
    "/sign-out",
    name="sign_out",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(403),
    summary="End this session",
)
async def sign_out(request: Request, session: SessionDep, _: CustomerWriting, web: CustomerSession) -> Response:
    await sessions.revoke_session(session, web.id)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    sessions.clear_session_cookie(response, request, CUSTOMER, request.app.state.settings)
    return response


@router.post(
    "/sign-out-everywhere",
    name="sign_out_everywhere",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(403),
    summary="End every session of this customer, on every device",
)
async def sign_out_everywhere(request: Request, session: SessionDep, customer: CustomerWriting) -> Response:
    await sessions.revoke_all_sessions(session, CUSTOMER, customer.id)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    sessions.clear_session_cookie(response, request, CUSTOMER, request.app.state.settings)
    return response


# --- orders --------------------------------------------------------------------------------------------------------


@router.get("/orders", name="orders", summary="The customer's orders, newest first")
async def orders(session: SessionDep, customer: CurrentCustomer) -> list[CustomerOrder]:
    return [await service.order_view(session, o) for o in await service.orders_of(session, customer)]


@router.get("/orders/{order_id}", name="order", summary="One of the customer's orders")
async def order(order_id: uuid.UUID, session: SessionDep, customer: CurrentCustomer) -> CustomerOrder:
    return await service.order_view(session, await service.order_of(session, customer, order_id))


@router.get(
    "/orders/{order_id}/events",
    name="order_events",
    summary="Server-Sent Events: the order's history, then its live progress (resume with Last-Event-ID)",
    response_class=EventSourceResponse,
)
async def events(
    order_id: uuid.UUID,
    session: SessionDep,
    rt: OrdersRuntimeDep,
    customer: CurrentCustomer,
    last_event_id: LastEventId = None,
    after: After | None = None,
) -> EventSourceResponse:
    await service.order_of(session, customer, order_id)
    cursor = sse_cursor(last_event_id, after)
    stream = order_events(rt.sessions, rt.listener, order_id, after_id=cursor)
    return EventSourceResponse(stream, ping=rt.settings.sse_ping_seconds, headers={"X-Accel-Buffering": "no"})


@router.post(
    "/orders/{order_id}/credentials/reveal",
    name="reveal_credentials",
    responses=problems(403),
    summary="The tools' admin logins, once: afterwards (and for anyone else) 404",
)
async def reveal_credentials(
    order_id: uuid.UUID, request: Request, session: SessionDep, customer: CustomerWriting
) -> CredentialsOut:
    order = await service.order_of(session, customer, order_id)
    creds = await credentials.reveal_for_order(session, order.id, request.app.state.settings)
    return CredentialsOut(domain=order.domain, credentials=creds)


# --- tenants -------------------------------------------------------------------------------------------------------


@router.get("/tenants", name="tenants", summary="The customer's servers: tools, health, last backup")
async def tenants(request: Request, session: SessionDep, customer: CurrentCustomer) -> list[CustomerTenant]:
    settings = request.app.state.settings
    return [await service.tenant_view(session, t, settings) for t in await service.tenants_of(session, customer)]


@router.get("/tenants/{tenant_id}", name="tenant", summary="One server: its tools with links, health, last backup")
async def tenant(
    tenant_id: uuid.UUID, request: Request, session: SessionDep, customer: CurrentCustomer
) -> CustomerTenant:
    found = await service.tenant_of(session, customer, tenant_id)
    return await service.tenant_view(session, found, request.app.state.settings)


@router.get("/tenants/{tenant_id}/usage", name="usage", summary="AI tokens used this month against the allowance")
async def usage(tenant_id: uuid.UUID, request: Request, session: SessionDep, customer: CurrentCustomer) -> TokenUsage:
    found = await service.tenant_of(session, customer, tenant_id)
    return await service.token_usage(session, found, request.app.state.settings)


# --- billing -------------------------------------------------------------------------------------------------------


async def invoices_of(rt, email: str) -> list[InvoiceOut]:
    if rt.gateway is None:
        raise PaymentsNotConfigured("The hub has no Stripe key: there are no invoices to show.")
    return [
        InvoiceOut(
            invoice_id=i.id,
            number=i.number,
            status=i.status,
            amount_due_cents=i.amount_due,
            amount_paid_cents=i.amount_paid,
            currency=i.currency,
            created_at=datetime.fromtimestamp(i.created, UTC),
            url=i.hosted_invoice_url,
            pdf_url=i.invoice_pdf,
        )
        for i in await rt.gateway.list_invoices(email)
    ]


@router.get("/invoices", name="invoices", responses=problems(502), summary="The customer's invoices (from Stripe)")
async def invoices(rt: OrdersRuntimeDep, customer: CurrentCustomer) -> list[InvoiceOut]:
    return await invoices_of(rt, customer.email)


# --- push devices -------------------------------------------------------------------------------------------------


def _device(d: PushDevice) -> PushDeviceOut:
    return PushDeviceOut.model_validate({**d.__dict__, "token_tail": d.token[-6:]})


@router.post(
    "/push-devices",
    name="push_device_register",
    status_code=status.HTTP_201_CREATED,
    summary="Register this app's device for alert push notifications (the same token again: the same device)",
)
async def register_push_device(body: PushDeviceCreate, session: SessionDep, customer: CustomerWriting) -> PushDeviceOut:
    return _device(await service.register_push_device(session, customer, body))


@router.get("/push-devices", name="push_devices", summary="The customer's devices that take push notifications")
async def push_devices(session: SessionDep, customer: CurrentCustomer) -> list[PushDeviceOut]:
    return [_device(d) for d in await service.push_devices_of(session, customer)]


@router.delete(
    "/push-devices/{device_id}",
    name="push_device_forget",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(404),
    summary="Stop push notifications to a device",
)
async def forget_push_device(device_id: uuid.UUID, session: SessionDep, customer: CustomerWriting) -> None:
    await service.forget_push_device(session, customer, device_id)


admin_router = APIRouter(prefix="/api/v1/admin/tenants", tags=["customer"])


@admin_router.get(
    "/{tenant_id}/push-devices",
    name="tenant_push_devices",
    summary="The devices to push a tenant's alerts to: its customers' (for the push gateway)",
)
async def tenant_push_devices(
    tenant_id: uuid.UUID,
    session: SessionDep,
    _: Authorized(Scope.FLEET_READ),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[TenantPushDevice]:
    rows, next_cursor = await service.push_devices_of_tenant(session, tenant_id, limit=limit, cursor=cursor)
    return Page(items=[TenantPushDevice.model_validate(r) for r in rows], next_cursor=next_cursor)


routers = [router, admin_router]
