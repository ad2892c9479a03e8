"""A loopback fake of a Slack incoming webhook (https://api.slack.com/messaging/webhooks).

``POST /services/T…/B…/<secret>`` with a JSON body carrying ``text`` (or ``blocks``) answers ``200 ok`` (text/plain);
a bad body answers ``400 invalid_payload``, an unknown hook ``404 no_service``, as Slack does. ``fail_next(n,
status, retry_after)`` injects failures (429 with ``Retry-After`` is Slack's rate limit). Received messages are in
``messages``; every request (failed ones too) in ``requests``.
"""

from __future__ import annotations

import json
import secrets
import threading
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route


class FakeSlackWebhook:
    def __init__(self) -> None:
        self.path = f"/services/T{secrets.token_hex(4).upper()}/B{secrets.token_hex(4).upper()}/{secrets.token_hex(12)}"
        self.messages: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self._failures: list[tuple[int, float | None]] = []
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/services/{a}/{b}/{c}", self._post, methods=["POST"])])

    def url(self, base: str) -> str:
        return base + self.path

    def fail_next(self, times: int = 1, status: int = 500, retry_after: float | str | None = None) -> None:
        """Answer the next ``times`` posts with ``status``; ``retry_after``: seconds, or a header value as given."""
        with self._lock:
            self._failures.extend([(status, retry_after)] * times)

    async def _post(self, request: Request) -> PlainTextResponse:
        body = await request.body()
        with self._lock:
            self.requests.append({"path": request.url.path, "headers": dict(request.headers), "body": body})
            if request.url.path != self.path:
                return PlainTextResponse("no_service", status_code=404)
            if self._failures:
                status, retry_after = self._failures.pop(0)
                if isinstance(retry_after, float | int):
                    retry_after = str(int(retry_after))
                headers = {"Retry-After": retry_after} if retry_after is not None else None
                return PlainTextResponse("rate_limited" if status == 429 else "internal_error", status, headers=headers)
            try:
                payload = json.loads(body)
            except ValueError:
                return PlainTextResponse("invalid_payload", status_code=400)
            if not isinstance(payload, dict) or not (payload.get("text") or payload.get("blocks")):
                return PlainTextResponse("no_text", status_code=400)
            self.messages.append(payload)
        return PlainTextResponse("ok")
