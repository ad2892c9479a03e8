"""Cross-site request forgery: two checks on every state-changing request of a web route.

1. Same origin: the ``Origin`` header (else ``Referer``) must name this hub (the request's own host or
   ``public_url``). A request with neither is refused: browsers send Origin on every cross-site POST.
2. The synchronizer token of the session (``web_sessions.csrf_secret``), sent back as the form field
   ``csrf_token`` or the ``X-CSRF-Token`` header, compared in constant time.

Failure raises :class:`CsrfFailed` (403): problem+json on JSON routes, an HTML error page on HTML routes.
Forms are plain ``application/x-www-form-urlencoded``; :func:`read_form` parses them (bounded).
"""

from __future__ import annotations

import hmac
from typing import Annotated
from urllib.parse import parse_qsl, urlsplit

from fastapi import Depends, Request

from letsbe_hub.config import HubSettings
from letsbe_hub.web.sessions import CUSTOMER, OPERATOR, SessionKind, WebSession, session_dependency
from letsbe_platform.errors import Forbidden, Unprocessable

FORM_FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_FORM_FIELDS = 50


class CsrfFailed(Forbidden):
    type, title = "csrf", "Cross-site request refused"


def csrf_token(web_session: WebSession) -> str:
    """The token a page embeds in its forms (and a script sends as X-CSRF-Token)."""
    return web_session.csrf_secret


async def read_form(request: Request) -> dict[str, str]:
    """The request's url-encoded form (first value of each field), parsed once per request."""
    cached = getattr(request.state, "form", None)
    if cached is not None:
        return cached
    form: dict[str, str] = {}
    if request.headers.get("content-type", "").split(";")[0].strip() == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl((await request.body()).decode(), max_num_fields=MAX_FORM_FIELDS, strict_parsing=False)
        except (UnicodeDecodeError, ValueError):
            raise Unprocessable("The form is not valid url-encoded UTF-8.") from None
        for name, value in pairs:
            form.setdefault(name, value)
    request.state.form = form
    return form


def _host_of(url: str) -> str:
    try:
        return (urlsplit(url).netloc or "").lower()
    except ValueError:
        return ""


def check_origin(request: Request) -> None:
    """Refuse a state-changing request that does not come from a page of this hub."""
    if request.method in SAFE_METHODS:
        return
    settings: HubSettings = request.app.state.settings
    allowed = {_host_of(settings.public_url), (request.headers.get("host") or "").lower()} - {""}
    origin = request.headers.get("origin")
    source = origin if origin and origin != "null" else request.headers.get("referer")
    if not source or _host_of(source) not in allowed:
        raise CsrfFailed("This request did not come from a page of this site.")


async def check_token(request: Request, web_session: WebSession) -> None:
    if request.method in SAFE_METHODS:
        return
    sent = request.headers.get(HEADER) or (await read_form(request)).get(FORM_FIELD) or ""
    if not hmac.compare_digest(sent.encode(), web_session.csrf_secret.encode()):
        raise CsrfFailed("The form's security token is missing or stale: reload the page and try again.")


async def same_origin(request: Request) -> None:
    """For forms before sign-in (no session yet, so no token): the origin check alone."""
    check_origin(request)


def csrf_protected(kind: SessionKind):
    """A dependency: the live session of ``kind`` (else sign-in required), with both CSRF checks passed."""
    current = session_dependency(kind)

    # A default, not Annotated: with postponed annotations a closure's local could not be resolved.
    async def protected(request: Request, web_session: WebSession = Depends(current)) -> WebSession:
        check_origin(request)
        await check_token(request, web_session)
        return web_session

    protected.__name__ = f"csrf_protected_{kind.name}"
    return protected


SameOrigin = Depends(same_origin)
CustomerWrite = Annotated[WebSession, Depends(csrf_protected(CUSTOMER))]
OperatorWrite = Annotated[WebSession, Depends(csrf_protected(OPERATOR))]
