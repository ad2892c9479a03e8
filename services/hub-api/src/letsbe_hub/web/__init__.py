"""The hub's browser-facing foundation, shared by the customer portal and the operator console.

- ``sessions``: server-side sessions in ``web_sessions`` and the cookie that carries their token.
- ``csrf``: the per-session synchronizer token and the Origin/Referer check on every state-changing request.
- ``headers``: security headers (CSP, framing, caching) on every web route.
- ``templates``: the Jinja2 environment (autoescape on), the base layout and the static files.

``install(app)`` wires the parts that live on the app (headers middleware, HTML error pages, static files).
"""

from __future__ import annotations

from fastapi import FastAPI

from letsbe_hub.web import headers, templates


def install(app: FastAPI) -> None:
    app.add_middleware(headers.SecurityHeadersMiddleware)
    templates.install(app)
