"""Who is signed in to the console, what they may do, and how its pages answer (HTML, also for errors).

A console session is a server-side session of principal kind "operator" (``letsbe_hub.web.sessions``). Every
state-changing console request passes both CSRF checks (``letsbe_hub.web.csrf``) in :func:`signed_in` itself, so no
form can forget them. The account is read again on every request: a disabled account or a removed scope counts at
once.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.routing import APIRoute

from letsbe_hub.auth.scopes import Scope
from letsbe_hub.operators import service as operators
from letsbe_hub.operators.service import SignedIn
from letsbe_hub.web import csrf, limits, sessions, templates
from letsbe_hub.web.sessions import OPERATOR, OperatorSession, WebSession
from letsbe_platform.errors import DomainError, Forbidden
from letsbe_platform.web import SessionDep


def pretty(value: Any) -> str:
    """JSON for people (a call's preview, a command's result): indented, non-ASCII kept; escaped as any text."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


# Template variables a page may leave out (the environment is strict: any other missing name is a bug).
DEFAULTS: dict[str, Any] = {"nav": None, "message": None, "back": None, "name": None, "csrf_token": "",
                            "pretty": pretty}


class ConsoleRoute(APIRoute):
    """Console routes answer HTML: a domain error or invalid input is a page with its status, not problem+json;
    "sign in first" is the sign-in page, coming back here afterwards."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except sessions.SignInRequired:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                if request.method != "GET" or request.url.path.endswith(("/events", "/badge")):
                    target = "/console/"
                return RedirectResponse("/console/sign-in?" + urllib.parse.urlencode({"next": target}), 303)
            except DomainError as exc:
                return _problem_page(request, exc.status_code, exc.title, exc.detail)
            except RequestValidationError as exc:
                detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
                return _problem_page(request, 422, "Invalid request", detail)

        return route


def _problem_page(request: Request, status: int, title: str, detail: str) -> Response:
    return render(request, "console/problem.html", getattr(request.state, "console_operator", None), title=title,
                  problem_title=title, detail=detail, status_code=status)


async def signed_in(request: Request, session: SessionDep, web: OperatorSession) -> SignedIn:
    op = await operators.current(session, web.principal_id)
    if op is None:
        raise sessions.SignInRequired(OPERATOR)
    csrf.check_origin(request)
    await csrf.check_token(request, web)
    request.state.console_operator, request.state.console_session = op, web
    return op


Operator = Annotated[SignedIn, Depends(signed_in)]


def require(op: SignedIn, scope: Scope) -> None:
    if scope.value not in op.scopes:
        raise Forbidden(f"Your account lacks the '{scope.value}' scope this needs.")


async def form_of(request: Request) -> dict[str, str]:
    """The posted form (url-encoded, bounded; its CSRF token was checked with the session)."""
    return await csrf.read_form(request)


def render(request: Request, template: str, op: SignedIn | None, *, status_code: int = 200,
           **context: Any) -> Response:
    web: WebSession | None = getattr(request.state, "console_session", None)
    token = csrf.csrf_token(web) if web is not None else ""
    return templates.render(request, template, {**DEFAULTS, "operator": op, "csrf_token": token, **context},
                            status_code=status_code)


# --- sign-in and sign-out --------------------------------------------------------------------------------------------


SAFE_NEXT = re.compile(r"/console/[A-Za-z0-9/_.~?=&%+-]*")  # printable URL characters only: no header tricks


def _next(target: str | None) -> str:
    """Only a console path on this host (no open redirect to //evil.example)."""
    if target and SAFE_NEXT.fullmatch(target) and "//" not in target:
        return target
    return "/console/"


async def sign_in_page(request: Request, next: str | None = None) -> Response:
    return render(request, "console/sign_in.html", None, title="Sign in", next=_next(next))


async def sign_in_submit(request: Request, session: SessionDep) -> Response:
    csrf.check_origin(request)  # no session yet, so no token: the origin check alone (no login CSRF)
    form = await form_of(request)
    # The browser's address: behind the hub's nginx every peer is nginx, and one address's failures would hold back
    # every operator's sign-in.
    result = await operators.sign_in(
        session, form.get("name", "")[:64], form.get("password", ""), form.get("code", "").strip(),
        key=request.app.state.settings.operator_totp_key, client=limits.client_address(request),
    )
    if isinstance(result, operators.Refused):
        return render(request, "console/sign_in.html", None, title="Sign in", message=result.message,
                      name=form.get("name", "")[:64], next=_next(form.get("next")), status_code=result.status_code)
    settings = request.app.state.settings
    response = RedirectResponse(_next(form.get("next")), status_code=303)
    # Always a new session and token; the one the browser came with (planted or stale) is revoked: no fixation.
    _, token = await sessions.start_session(session, OPERATOR, result.id, settings,
                                            replaces=request.cookies.get(OPERATOR.cookie))
    sessions.set_session_cookie(response, request, OPERATOR, token, settings)
    return response


async def sign_out(request: Request, session: SessionDep, op: Operator) -> Response:
    response = RedirectResponse("/console/sign-in", status_code=303)
    await sessions.revoke_session(session, request.state.console_session.id)
    sessions.clear_session_cookie(response, request, OPERATOR, request.app.state.settings)
    return response
