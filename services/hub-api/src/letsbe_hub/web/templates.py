"""Server-rendered pages: one Jinja2 environment (autoescape ON for every template), the base layout
(``templates/base.html``), the static files under ``/static`` and HTML error pages for HTML routes.

A page is ``render(request, "portal/orders.html", {...})``. Templates extend ``base.html``; scripts are files in
``static/`` (the CSP forbids inline script), data for them goes in ``data-`` attributes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from letsbe_hub.web.headers import STATIC_PREFIX
from letsbe_hub.web.sessions import SignInRequired
from letsbe_platform.asgi import _domain_error, _http_error
from letsbe_platform.errors import DomainError
from letsbe_platform.web import _validation_error

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
# Paths whose routes answer HTML: their errors are pages, their "sign in first" is a redirect.
HTML_PREFIXES: tuple[str, ...] = ("/portal", "/console")

env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,  # every template, whatever its name: customer and tenant data are hostile until escaped
    undefined=jinja2.StrictUndefined,
    enable_async=False,
)


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, *, status_code: int = 200
) -> HTMLResponse:
    html = env.get_template(name).render({"request": request, "static": STATIC_PREFIX, **(context or {})})
    return HTMLResponse(html, status_code=status_code)


def is_html_route(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in HTML_PREFIXES)


async def _error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    if not is_html_route(request.url.path):
        return await _domain_error(request, exc)
    if isinstance(exc, SignInRequired):
        return RedirectResponse(exc.kind.sign_in_path, status_code=303)
    return render(request, "error.html", {"title": exc.title, "detail": exc.detail}, status_code=exc.status_code)


async def _other_error(request: Request, exc: Exception) -> Response:
    """A bad path parameter or an unknown page under an HTML prefix: a page too (the API keeps problem+json)."""
    if not is_html_route(request.url.path):
        handler = _validation_error if isinstance(exc, RequestValidationError) else _http_error
        return await handler(request, exc)
    if isinstance(exc, RequestValidationError):
        return render(
            request, "error.html", {"title": "Not found", "detail": "There is no such page."}, status_code=404
        )
    assert isinstance(exc, StarletteHTTPException)
    title = "Not found" if exc.status_code == 404 else "Error"
    detail = "There is no such page." if exc.status_code == 404 else str(exc.detail)
    return render(request, "error.html", {"title": title, "detail": detail}, status_code=exc.status_code)


def install(app: FastAPI) -> None:
    app.mount(STATIC_PREFIX, StaticFiles(directory=STATIC_DIR), name="static")
    app.add_exception_handler(DomainError, _error)
    app.add_exception_handler(RequestValidationError, _other_error)
    app.add_exception_handler(StarletteHTTPException, _other_error)
