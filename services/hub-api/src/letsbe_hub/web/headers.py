"""Security headers on every web route (pages, their static files and the browser APIs behind them).

The CSP allows scripts, styles, images and connections from this hub only: no inline script, no framing, forms
post only here. Responses other than static files are never stored by a cache (they are personal).
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

# Path prefixes served to browsers. A new browser-facing area adds its prefix here.
WEB_PREFIXES: tuple[str, ...] = ("/portal", "/console", "/api/v1/customer", "/static")
STATIC_PREFIX = "/static"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'"
)
HEADERS: dict[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def _is_web(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in WEB_PREFIXES)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not _is_web(path):
            await self.app(scope, receive, send)
            return
        extra = dict(HEADERS)
        if not (path == STATIC_PREFIX or path.startswith(STATIC_PREFIX + "/")):
            extra["Cache-Control"] = "no-store"

        async def send_wrapper(message: Any) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                added = [(k.lower().encode(), v.encode()) for k, v in extra.items() if k.lower().encode() not in names]
                message["headers"] = [*message.get("headers", []), *added]
            await send(message)

        await self.app(scope, receive, send_wrapper)
