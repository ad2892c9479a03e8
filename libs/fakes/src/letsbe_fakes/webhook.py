"""A generic webhook receiver on loopback that checks LetsBe's signature the way a customer's endpoint would.

Signature scheme (documented for receivers): header ``X-LetsBe-Signature: t=<unix seconds>,v1=<hex>`` where
``hex = HMAC-SHA256(secret, "<t>." + raw_body)``; reject when no v1 matches (constant-time compare) or when ``t`` is
older than the tolerance (replays). This module implements the check independently of the sender's code.

Every request is kept in ``requests`` with ``verified`` (bool) and the parsed ``json``; invalid signatures get 401.
``fail_next(n, status)`` answers the next n requests with that status.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

SIGNATURE_HEADER = "x-letsbe-signature"


def verify(secret: bytes, header: str | None, body: bytes, *, tolerance: float = 300, now: float | None = None) -> bool:
    if not header:
        return False
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        ts = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - ts) > tolerance:
        return False
    expected = hmac.new(secret, f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, v) for v in parts.get("v1", []))


class WebhookReceiver:
    def __init__(self, secret: str, *, path: str = "/hooks/letsbe", tolerance: float = 300):
        self.secret = secret.encode()
        self.path = path
        self.tolerance = tolerance
        self.requests: list[dict[str, Any]] = []
        self._failures: list[int] = []
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route(path, self._post, methods=["POST"])])

    def url(self, base: str) -> str:
        return base + self.path

    def fail_next(self, times: int = 1, status: int = 503) -> None:
        with self._lock:
            self._failures.extend([status] * times)

    @property
    def accepted(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["verified"] and r["status"] < 300]

    async def _post(self, request: Request) -> JSONResponse:
        body = await request.body()
        ok = verify(self.secret, request.headers.get(SIGNATURE_HEADER), body, tolerance=self.tolerance)
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        with self._lock:
            status = 200 if ok else 401
            if ok and self._failures:
                status = self._failures.pop(0)
            self.requests.append(
                {"headers": dict(request.headers), "body": body, "json": parsed, "verified": ok, "status": status}
            )
        return JSONResponse({"received": status == 200}, status_code=status)
