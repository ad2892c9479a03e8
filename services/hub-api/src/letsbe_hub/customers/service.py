"""Customer accounts: sign-in by emailed one-time link, and what a signed-in customer may see.

A customer is the lower-cased email of their orders: every order whose ``customer_email`` matches is theirs, and
every tenant of those orders (tenant id = order id). Anything else is "not found" to them, never "forbidden", so a
customer cannot learn which ids exist.

Sign-in: :func:`request_sign_in` answers the same whatever the email (no account enumeration); only an email that
some order carries gets a link, at most ``sign_in_links_per_email_per_hour`` of them. A link works once
(:func:`consume_link` is one compare-and-set UPDATE) for ``sign_in_link_ttl_seconds``.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts import OrderStatus, load_catalog
from letsbe_contracts.enums import Tier
from letsbe_hub.config import HubSettings
from letsbe_hub.credentials import service as credentials
from letsbe_hub.customers.models import Customer, PushDevice, SignInLink
from letsbe_hub.customers.schemas import (
    AgentHealth,
    CustomerOrder,
    CustomerTenant,
    LastBackup,
    PushDeviceCreate,
    TokenUsage,
    ToolLink,
)
from letsbe_hub.llm import repository as llm_repo
from letsbe_hub.orders.models import Order
from letsbe_hub.tenants import repository as tenants_repo
from letsbe_hub.tenants.models import Tenant, TenantState
from letsbe_platform.errors import NotFound
from letsbe_platform.pagination import Keyset

TOKEN_BYTES = 32
SIGN_IN_ANSWER = "If an account exists for this email, a sign-in link is on its way. It works once, for a few minutes."


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def normalize_email(email: str) -> str:
    return email.strip().lower()


# --- sign-in -------------------------------------------------------------------------------------------------------


async def request_sign_in(session: AsyncSession, email: str, settings: HubSettings) -> str | None:
    """The sign-in link to email to ``email``, or None (no order carries it, or its hourly limit is reached).
    The caller answers the same either way."""
    email = normalize_email(email)
    has_order = await session.scalar(select(Order.id).where(func.lower(Order.customer_email) == email).limit(1))
    if has_order is None:
        return None
    stmt = insert(Customer).values(id=uuid.uuid4(), email=email)
    await session.execute(stmt.on_conflict_do_nothing(index_elements=[Customer.email]))
    customer_id = await session.scalar(select(Customer.id).where(Customer.email == email).with_for_update())
    assert customer_id is not None
    recent = await session.scalar(
        select(func.count())
        .select_from(SignInLink)
        .where(SignInLink.customer_id == customer_id, SignInLink.created_at > func.now() - timedelta(hours=1))
    )
    if (recent or 0) >= settings.sign_in_links_per_email_per_hour:
        return None
    token = secrets.token_urlsafe(TOKEN_BYTES)
    expires = datetime.now(UTC) + timedelta(seconds=settings.sign_in_link_ttl_seconds)
    session.add(SignInLink(customer_id=customer_id, token_hash=_hash(token), expires_at=expires))
    await session.flush()
    return f"{settings.public_url.rstrip('/')}/portal/sign-in/{token}"


async def link_is_live(session: AsyncSession, token: str) -> bool:
    stmt = select(SignInLink.id).where(
        SignInLink.token_hash == _hash(token), SignInLink.used_at.is_(None), SignInLink.expires_at > func.now()
    )
    return (await session.execute(stmt)).scalar_one_or_none() is not None


async def consume_link(session: AsyncSession, token: str) -> Customer | None:
    """The customer the link signs in, once: of two uses of one link, exactly one gets a customer back."""
    customer_id = await session.scalar(
        update(SignInLink)
        .where(SignInLink.token_hash == _hash(token), SignInLink.used_at.is_(None), SignInLink.expires_at > func.now())
        .values(used_at=func.now())
        .returning(SignInLink.customer_id)
    )
    if customer_id is None:
        return None
    await session.execute(update(Customer).where(Customer.id == customer_id).values(last_sign_in_at=func.now()))
    return await session.get(Customer, customer_id)


async def get_customer(session: AsyncSession, customer_id: uuid.UUID) -> Customer:
    customer = await session.get(Customer, customer_id)
    if customer is None:  # a session outlived its customer row: treat as signed out
        raise NotFound("No such customer.")
    return customer


def sign_in_email(to: str, link: str, settings: HubSettings) -> EmailMessage:
    minutes = settings.sign_in_link_ttl_seconds // 60
    msg = EmailMessage()
    msg["From"] = settings.mail_from
    msg["To"] = to
    msg["Subject"] = "Your LetsBe sign-in link"
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain=parseaddr(settings.mail_from)[1].rpartition("@")[2] or "letsbe.biz")
    msg.set_content(
        "\n".join(
            [
                "Hello,",
                "",
                "here is your link to sign in to your LetsBe account:",
                "",
                f"  {link}",
                "",
                f"It works once, for the next {minutes} minutes. If you did not ask for it, ignore this email:",
                "nobody can sign in without it.",
                "",
                "the LetsBe team",
            ]
        )
    )
    return msg


# --- what a customer sees ------------------------------------------------------------------------------------------


def _mine(customer: Customer):
    return func.lower(Order.customer_email) == customer.email


async def orders_of(session: AsyncSession, customer: Customer) -> list[Order]:
    stmt = select(Order).where(_mine(customer)).order_by(Order.created_at.desc(), Order.id).limit(200)
    return list((await session.execute(stmt)).scalars())


async def order_of(session: AsyncSession, customer: Customer, order_id: uuid.UUID) -> Order:
    order = (await session.execute(select(Order).where(Order.id == order_id, _mine(customer)))).scalar_one_or_none()
    if order is None:
        raise NotFound("No order with that id.")
    return order


async def order_view(session: AsyncSession, order: Order) -> CustomerOrder:
    return CustomerOrder(
        order_id=order.id,
        domain=order.domain,
        tier=order.tier,
        region=order.region,
        tools=list(order.tools),
        status=order.status,
        amount_cents=order.amount_cents,
        currency=order.currency,
        created_at=order.created_at,
        paid_at=order.paid_at,
        checkout_url=order.checkout_url if order.status == OrderStatus.PENDING_PAYMENT else None,
        tenant_id=order.tenant_id,
        credentials_waiting=await credentials.waiting(session, order.id),
    )


async def tenants_of(session: AsyncSession, customer: Customer) -> list[Tenant]:
    stmt = (
        select(Tenant)
        .join(Order, Order.id == Tenant.order_id)
        .where(_mine(customer))
        .order_by(Tenant.created_at.desc(), Tenant.id)
    )
    return list((await session.execute(stmt)).scalars())


async def tenant_of(session: AsyncSession, customer: Customer, tenant_id: uuid.UUID) -> Tenant:
    stmt = select(Tenant).join(Order, Order.id == Tenant.order_id).where(Tenant.id == tenant_id, _mine(customer))
    tenant = (await session.execute(stmt)).scalar_one_or_none()
    if tenant is None:
        raise NotFound("No tenant with that id.")
    return tenant


def tool_links(domain: str, tools: list[str]) -> list[ToolLink]:
    """The tools the customer opens, at their subdomains (operator-only tools, like Portainer, are left out)."""
    catalog = load_catalog()
    links = []
    for name in tools:
        try:
            tool = catalog.tool(name)
        except KeyError:
            continue
        if tool.subdomain and not tool.admin_only:
            links.append(ToolLink(tool=name, title=tool.title, url=f"https://{tool.subdomain}.{domain}"))
    return links


async def tenant_view(session: AsyncSession, tenant: Tenant, settings: HubSettings) -> CustomerTenant:
    order = await session.get(Order, tenant.order_id)
    agents = await tenants_repo.agents_of(session, tenant.id)
    # An agent is healthy while its heartbeats come on time (three intervals of slack).
    fresh_after = datetime.now(UTC) - timedelta(seconds=3 * settings.heartbeat_interval_seconds)
    health = [
        AgentHealth(
            agent=a.kind,
            version=a.version,
            last_heartbeat_at=a.last_heartbeat_at,
            healthy=a.last_heartbeat_at is not None and a.last_heartbeat_at > fresh_after,
        )
        for a in agents
    ]
    if tenant.status == TenantState.PENDING or not health:
        overall = "pending"
    elif all(a.healthy for a in health):
        overall = "ok"
    elif any(a.healthy for a in health):
        overall = "degraded"
    else:
        overall = "down"
    backup = await tenants_repo.latest_backup(session, tenant.id)
    return CustomerTenant(
        tenant_id=tenant.id,
        order_id=tenant.order_id,
        domain=tenant.domain,
        tier=tenant.tier,
        region=tenant.region,
        status=tenant.status,
        health=overall,
        tools=tool_links(tenant.domain, list(order.tools) if order else []),
        agents=health,
        last_backup=LastBackup(
            report_date=backup.report_date,
            checked_at=backup.checked_at,
            ok=backup.problem is None,
            problem=backup.problem,
        )
        if backup
        else None,
    )


def month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


async def token_usage(
    session: AsyncSession, tenant: Tenant, settings: HubSettings, *, now: datetime | None = None
) -> TokenUsage:
    """The LLM tokens the relay metered for this tenant this calendar month, against the tier's allowance."""
    since = month_start(now or datetime.now(UTC))
    rows = await llm_repo.usage_of(session, tenant.id, since)
    tokens_in, tokens_out = sum(r.tokens_in for r in rows), sum(r.tokens_out for r in rows)
    allowance = settings.tier_monthly_tokens.get(Tier(tenant.tier), 0)
    used = tokens_in + tokens_out
    return TokenUsage(
        tenant_id=tenant.id,
        period_start=since,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        tokens_used=used,
        allowance=allowance,
        percent_used=round(100 * used / allowance, 1) if allowance else 0.0,
        requests=sum(r.requests for r in rows),
    )


# --- push devices (§9.2: the customer's app is told about medium and hard alerts) -------------------------------

PUSH_DEVICES = Keyset("tenant-push-devices", PushDevice.created_at, PushDevice.id)


async def register_push_device(session: AsyncSession, customer: Customer, body: PushDeviceCreate) -> PushDevice:
    """The device, registered to this customer; the same token again is the same device (moved here if another
    account had it: a device belongs to whoever signed in on it last)."""
    values = {"customer_id": customer.id, "platform": body.platform, "label": body.label}
    stmt = insert(PushDevice).values(id=uuid.uuid4(), token=body.token, token_hash=_hash(body.token), **values)
    stmt = stmt.on_conflict_do_update(index_elements=[PushDevice.token_hash], set_=values).returning(PushDevice)
    return (await session.execute(stmt.execution_options(populate_existing=True))).scalar_one()


async def push_devices_of(session: AsyncSession, customer: Customer) -> list[PushDevice]:
    stmt = (
        select(PushDevice).where(PushDevice.customer_id == customer.id).order_by(PushDevice.created_at, PushDevice.id)
    )
    return list((await session.execute(stmt.limit(100))).scalars())


async def forget_push_device(session: AsyncSession, customer: Customer, device_id: uuid.UUID) -> None:
    stmt = delete(PushDevice).where(PushDevice.id == device_id, PushDevice.customer_id == customer.id)
    if (await session.execute(stmt.returning(PushDevice.id))).first() is None:
        raise NotFound("No device with that id.")


async def push_devices_of_tenant(
    session: AsyncSession, tenant_id: uuid.UUID, *, limit: int, cursor: str | None
) -> tuple[list[PushDevice], str | None]:
    """The devices of every customer whose order the tenant serves (the push gateway's address book)."""
    owners = (
        select(Customer.id)
        .join(Order, func.lower(Order.customer_email) == Customer.email)
        .join(Tenant, Tenant.order_id == Order.id)
        .where(Tenant.id == tenant_id)
    )
    stmt = select(PushDevice).where(PushDevice.customer_id.in_(owners))
    return await PUSH_DEVICES.fetch(session, stmt, limit=limit, cursor=cursor)
