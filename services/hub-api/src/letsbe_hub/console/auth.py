"""Who is signed in to the console, what they may do, and how its pages answer (HTML, also for errors).

A console session is a server-side session of principal kind "operator" (``letsbe_hub.web.sessions``); every form
carries the session's CSRF token (``letsbe_hub.web.csrf``). The account is read again on every request, so a
disabled account or a removed scope counts at once.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.routing import APIRoute

from letsbe_hub.auth.scopes import Scope
from letsbe_hub.console import web
from letsbe_hub.operators import service as operators
from letsbe_hub.operators.service import ClientLimiter, SignedIn
from letsbe_platform.errors import DomainError, Forbidden
from letsbe_platform.web import SessionDep

MAX_FORM_BYTES = 64 * 1024
_limiter = ClientLimiter()


class SignInRequired(Exception):
    """No console session (or an ended one): the page answers with the sign-in page's address."""


class ConsoleRoute(APIRoute):
    """Console routes answer HTML: a domain error or invalid input is a page with its status, not problem+json."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                if request.method != "GET" or request.url.path.endswith(("/events", "/badge")):
                    target = "/console/"
                return RedirectResponse("/console/sign-in?" + urllib.parse.urlencode({"next": target}), 303)
            except DomainError as exc:
                return await _problem_page(request, exc.status_code, exc.title, exc.detail)
            except RequestValidationError as exc:
                detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
                return await _problem_page(request, 422, "Invalid request", detail)

        return route


async def _problem_page(request: Request, status: int, title: str, detail: str) -> Response:
    op = getattr(request.state, "console_operator", None)
    return await render(request, "console/problem.html", op, title=title, problem_title=title, detail=detail,
                        back=request.headers.get("referer") if _same_origin(request) else None, status_code=status)


def _same_origin(request: Request) -> bool:
    referer = request.headers.get("referer") or ""
    return referer.startswith(f"{request.url.scheme}://{request.url.netloc}/console")


async def signed_in(request: Request, session: SessionDep) -> SignedIn:
    operator_id = await web.session_principal(request, session)
    op = await operators.current(session, operator_id) if operator_id else None
    if op is None:
        raise SignInRequired()
    request.state.console_operator = op
    return op


Operator = Annotated[SignedIn, Depends(signed_in)]


def require(op: SignedIn, scope: Scope) -> None:
    if scope.value not in op.scopes:
        raise Forbidden(f"Your account lacks the '{scope.value}' scope this needs.")


async def form_of(request: Request) -> dict[str, str]:
    """The urlencoded form of a POST (the console sends no other), its CSRF token checked."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise Forbidden("The form is too large.")
    try:
        pairs = urllib.parse.parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=100, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise Forbidden("The form could not be read.") from None
    form = dict(pairs)
    await web.check_csrf(request, form.get("csrf_token"))
    return form


async def render(request: Request, template: str, op: SignedIn | None, *, status_code: int = 200,
                 **context: Any) -> Response:
    return web.render(request, template, {"operator": op, "csrf_token": await web.csrf_token(request),
                                          "title": context.pop("title", "LetsBe"), **context}, status_code=status_code)


# --- sign-in and sign-out --------------------------------------------------------------------------------------------


def _next(target: str | None) -> str:
    """Only a console path on this host (no open redirect to //evil.example)."""
    if target and target.startswith("/console/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/console/"


async def sign_in_page(request: Request, next: str | None = None) -> Response:  # noqa: A002 - the query's name
    return await render(request, "console/sign_in.html", None, title="Sign in", next=_next(next))


async def sign_in_submit(request: Request, session: SessionDep) -> Response:
    form = await form_of(request)
    client = request.client.host if request.client else "?"
    result = await operators.sign_in(
        session, form.get("name", "")[:64], form.get("password", ""), form.get("code", "").strip(),
        key=request.app.state.settings.operator_totp_key, limiter=_limiter, client=client,
    )
    if isinstance(result, operators.Refused):
        return await render(request, "console/sign_in.html", None, title="Sign in", message=result.message,
                            name=form.get("name", "")[:64], next=_next(form.get("next")),
                            status_code=result.status_code)
    response = RedirectResponse(_next(form.get("next")), status_code=303)
    await web.start(request, response, session, result)  # a new session id: none chosen before sign-in survives
    return response


async def sign_out(request: Request, session: SessionDep) -> Response:
    await form_of(request)
    response = RedirectResponse("/console/sign-in", status_code=303)
    await web.end(request, response, session)
    return response
