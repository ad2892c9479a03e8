"""Server-side browser sessions for two kinds of principal: customers (portal) and operators (console).

The cookie carries a random 32-byte token; the table keeps only its SHA-256. Signing in always issues a new token
(a token planted before sign-in is never promoted: no fixation). A session ends at the first of: sign-out,
``web_session_idle_seconds`` without a request, ``web_session_lifetime_seconds`` after sign-in, or "sign out
everywhere" (``revoke_all_sessions``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Request, Response, Security
from fastapi.security import APIKeyCookie
from sqlalchemy import DateTime, Index, String, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from letsbe_hub.config import HubSettings
from letsbe_hub.db import Base
from letsbe_platform.errors import Unauthorized
from letsbe_platform.web import SessionDep

TOKEN_BYTES = 32
# Touch last_seen_at at most this often: a page with a live stream and a few fetches is one write, not five.
TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class SessionKind:
    """One kind of principal: its cookie, the paths the cookie is sent to, and where its sign-in page is."""

    name: str
    cookie: str
    paths: tuple[str, ...]
    sign_in_path: str


CUSTOMER = SessionKind("customer", "letsbe_customer_session", ("/portal", "/api/v1/customer"), "/portal/sign-in")
OPERATOR = SessionKind("operator", "letsbe_console_session", ("/console",), "/console/sign-in")
KINDS = {k.name: k for k in (CUSTOMER, OPERATOR)}


class WebSession(Base):
    __tablename__ = "web_sessions"
    __table_args__ = (Index("ix_web_sessions_principal", "principal_kind", "principal_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    principal_kind: Mapped[str] = mapped_column(String(20))  # "customer" | "operator"
    principal_id: Mapped[uuid.UUID] = mapped_column()
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_secret: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # the absolute end
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def start_session(
    session: AsyncSession,
    kind: SessionKind,
    principal_id: uuid.UUID,
    settings: HubSettings,
    *,
    replaces: str | None = None,
) -> tuple[WebSession, str]:
    """A new session and its token (for the cookie). ``replaces``: the token the browser sent before signing in;
    that session, if any, is revoked, so a fixed or stale cookie never survives a sign-in."""
    if replaces:
        await session.execute(
            update(WebSession)
            .where(WebSession.token_hash == token_hash(replaces), WebSession.revoked_at.is_(None))
            .values(revoked_at=func.now())
        )
    token = secrets.token_urlsafe(TOKEN_BYTES)
    now = datetime.now(UTC)
    row = WebSession(
        principal_kind=kind.name,
        principal_id=principal_id,
        token_hash=token_hash(token),
        csrf_secret=secrets.token_urlsafe(32),
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(seconds=settings.web_session_lifetime_seconds),
    )
    session.add(row)
    await session.flush()
    return row, token


async def resolve_session(
    session: AsyncSession, kind: SessionKind, token: str, settings: HubSettings, *, now: datetime | None = None
) -> WebSession | None:
    """The live session of this kind for a cookie's token, or None; a live one is marked as seen now."""
    now = now or datetime.now(UTC)
    row = (
        await session.execute(
            select(WebSession).where(
                WebSession.token_hash == token_hash(token),
                WebSession.principal_kind == kind.name,
                WebSession.revoked_at.is_(None),
                WebSession.expires_at > now,
                WebSession.last_seen_at > now - timedelta(seconds=settings.web_session_idle_seconds),
            )
        )
    ).scalar_one_or_none()
    if row is not None and now - row.last_seen_at >= TOUCH_EVERY:
        await session.execute(update(WebSession).where(WebSession.id == row.id).values(last_seen_at=now))
        row.last_seen_at = now
    return row


async def revoke_session(session: AsyncSession, session_id: uuid.UUID) -> None:
    await session.execute(
        update(WebSession)
        .where(WebSession.id == session_id, WebSession.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )


async def revoke_all_sessions(session: AsyncSession, kind: SessionKind, principal_id: uuid.UUID) -> int:
    """Sign out everywhere: every live session of this principal ends now. Returns how many."""
    result = await session.execute(
        update(WebSession)
        .where(
            WebSession.principal_kind == kind.name,
            WebSession.principal_id == principal_id,
            WebSession.revoked_at.is_(None),
        )
        .values(revoked_at=func.now())
    )
    return result.rowcount or 0  # type: ignore[attr-defined]


# --- the cookie ----------------------------------------------------------------------------------------------------


def _plain_http_loopback(request: Request) -> bool:
    if request.url.scheme != "http":
        return False
    host = request.url.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _cookie_options(request: Request, settings: HubSettings) -> dict[str, Any]:
    secure = settings.web_cookie_secure or not _plain_http_loopback(request)
    return {"httponly": True, "samesite": "lax", "secure": secure}


def set_session_cookie(
    response: Response, request: Request, kind: SessionKind, token: str, settings: HubSettings
) -> None:
    """The session cookie on each of the kind's paths (no Max-Age: the server decides when a session ends)."""
    for path in kind.paths:
        response.set_cookie(kind.cookie, token, path=path, **_cookie_options(request, settings))


def clear_session_cookie(response: Response, request: Request, kind: SessionKind, settings: HubSettings) -> None:
    for path in kind.paths:
        response.delete_cookie(kind.cookie, path=path, **_cookie_options(request, settings))


# --- the dependencies ----------------------------------------------------------------------------------------------


class SignInRequired(Unauthorized):
    """No live session. JSON routes answer 401 problem+json; HTML routes redirect to the kind's sign-in page."""

    def __init__(self, kind: SessionKind):
        super().__init__("Sign in first: this session is missing, expired or signed out.")
        self.kind = kind


_DEPENDENCIES: dict[str, Any] = {}


def session_dependency(kind: SessionKind):
    """A dependency that resolves the request's live session of ``kind`` from its cookie, or raises
    :class:`SignInRequired`. One callable per kind, so FastAPI resolves it once per request however many
    dependencies ask for it."""
    if kind.name in _DEPENDENCIES:
        return _DEPENDENCIES[kind.name]

    # Named in the OpenAPI as this kind's security scheme; the cookie is read below (with its length bound).
    scheme = APIKeyCookie(name=kind.cookie, scheme_name=f"{kind.name}Session", auto_error=False)

    async def current(request: Request, session: SessionDep, _cookie: str | None = Security(scheme)) -> WebSession:
        token = request.cookies.get(kind.cookie)
        settings: HubSettings = request.app.state.settings
        row = await resolve_session(session, kind, token, settings) if token and len(token) <= 100 else None
        if row is None:
            raise SignInRequired(kind)
        return row

    current.__name__ = f"current_{kind.name}_session"
    _DEPENDENCIES[kind.name] = current
    return current


CustomerSession = Annotated[WebSession, Depends(session_dependency(CUSTOMER))]
OperatorSession = Annotated[WebSession, Depends(session_dependency(OPERATOR))]
