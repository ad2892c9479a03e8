"""A loopback fake of the customer push gateway: ``POST /v1/push`` with ``Authorization: Bearer <token>``.

Body: ``{tenant_id, alert_id, kind, severity, rule, title, body}``; ``Idempotency-Key`` header: a repeated key is
answered 200 ``{"duplicate": true}`` and not pushed twice. 401 without the right token, 422 for a body missing
fields. ``fail_next(n, status)`` injects failures. Pushed notifications are in ``pushes``.
"""

from __future__ import annotations

import json
import secrets
import threading
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

REQUIRED = ("tenant_id", "alert_id", "kind", "severity", "title", "body")


class FakePushGateway:
    def __init__(self, token: str | None = None):
        self.token = token or secrets.token_urlsafe(24)
        self.pushes: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self._keys: set[str] = set()
        self._failures: list[int] = []
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/v1/push", self._push, methods=["POST"])])

    def url(self, base: str) -> str:
        return base + "/v1/push"

    def fail_next(self, times: int = 1, status: int = 503) -> None:
        with self._lock:
            self._failures.extend([status] * times)

    async def _push(self, request: Request) -> JSONResponse:
        body = await request.body()
        with self._lock:
            self.requests.append({"headers": dict(request.headers), "body": body})
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return JSONResponse({"error": "unauthorized"}, status_code=401)
            if self._failures:
                return JSONResponse({"error": "unavailable"}, status_code=self._failures.pop(0))
            try:
                message = json.loads(body)
            except ValueError:
                return JSONResponse({"error": "invalid json"}, status_code=400)
            missing = [k for k in REQUIRED if not isinstance(message, dict) or k not in message]
            if missing:
                return JSONResponse({"error": f"missing {missing}"}, status_code=422)
            key = request.headers.get("idempotency-key")
            if key and key in self._keys:
                return JSONResponse({"duplicate": True})
            if key:
                self._keys.add(key)
            self.pushes.append(message)
        return JSONResponse({"id": secrets.token_hex(8), "duplicate": False}, status_code=200)
