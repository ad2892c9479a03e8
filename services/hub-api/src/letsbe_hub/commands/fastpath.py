"""The heartbeat, answered before routing: the one request every agent makes every minute.

``process`` is the heartbeat's whole logic; the FastAPI route (for the OpenAPI schema and any app built without
this middleware) and :class:`HeartbeatFastPath` both call it. The middleware answers ``POST
/api/v1/tenant/heartbeat`` itself — body validated with the same pydantic model, errors as the same problem+json —
and skips route matching over every hub route and FastAPI's per-request dependency machinery, which are most of
the CPU a heartbeat costs otherwise (see docs/benchmarks.md).
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from letsbe_contracts.agent import HeartbeatRequest, HeartbeatResponse
from letsbe_hub.auth.service import hash_token as hash_key
from letsbe_hub.commands import service as commands
from letsbe_hub.config import HubSettings
from letsbe_hub.tenants import heartbeat as hb
from letsbe_hub.tenants import repository as repo
from letsbe_hub.tenants import service
from letsbe_hub.tenants.auth import AgentPrincipal
from letsbe_hub.tenants.errors import ReEnrol
from letsbe_platform.db import unit_of_work
from letsbe_platform.errors import PROBLEM_BASE, PROBLEM_JSON, DomainError, Unauthorized
from letsbe_platform.web import Runtime

PATH = "/api/v1/tenant/heartbeat"
MAX_BODY = 256 * 1024


async def process(rt: Runtime, settings: HubSettings, body: HeartbeatRequest, api_key: str) -> HeartbeatResponse:
    """Liveness every time (batched with concurrent heartbeats into one statement), the heavy part when it
    changed, the commands waiting for this agent, and tenant-heartbeat for the monitor."""
    writer = hb.writer_of(rt)
    beat = await writer.beat(hash_key(api_key), body.seq)
    if beat is None:
        raise ReEnrol()
    details_wanted = beat.details_hash is None
    if body.details is not None:
        digest = service.details_digest(body.details)
        if digest != beat.details_hash:
            async with unit_of_work(rt.sessions) as session:
                await service.store_details(session, beat.agent_id, beat.tenant_id, body.details, digest)
        details_wanted = False
    pulled = []
    if beat.commands_pending:
        principal = AgentPrincipal(beat.tenant_id, beat.agent_id, beat.kind, beat.domain, uuid.UUID(int=0))
        async with unit_of_work(rt.sessions) as session:
            pulled = await commands.pull(
                session, principal, redeliver_after=timedelta(seconds=settings.command_redeliver_seconds)
            )
    if beat.fresh:
        await writer.publish(beat, body.seq, body.details)
    return HeartbeatResponse(interval_seconds=writer.interval_seconds, commands=pulled, details_wanted=details_wanted)


class _Route:
    path = PATH  # what MetricsMiddleware labels the request with


class HeartbeatFastPath:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["route"] = _Route
        app = scope["app"]
        status, payload, content_type, extra = 200, b"", "application/json", []
        try:
            api_key = _bearer(scope)  # no credential: 401 before a byte of the body is read
            raw = await _body(receive)
            try:
                body = HeartbeatRequest.model_validate_json(raw)
            except ValidationError as exc:
                # The credential decides first: a caller the hub does not know learns nothing about the body.
                await _known_agent(app.state.runtime, api_key)
                status, payload, content_type = 422, _validation_problem(exc), PROBLEM_JSON
            else:
                answer = await process(app.state.runtime, app.state.settings, body, api_key)
                payload = answer.model_dump_json().encode()
        except DomainError as exc:
            status, content_type = exc.status_code, PROBLEM_JSON
            payload = _json(exc.problem(PATH))
            if status == 401:
                extra = [(b"www-authenticate", b"Bearer")]
        headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(payload)).encode()), *extra]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


async def _known_agent(rt: Runtime, api_key: str) -> None:
    """ReEnrol (401) unless the key belongs to an agent; only asked on the error path, the beat itself checks it."""
    async with unit_of_work(rt.sessions) as session:
        if await repo.find_credential(session, hash_key(api_key)) is None:
            raise ReEnrol()


async def _body(receive: Receive) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise _TooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class _TooLarge(DomainError):
    status_code, type, title = 413, "too-large", "Request body too large"


def _bearer(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    raise Unauthorized("Send the agent API key as 'Authorization: Bearer <key>'.")


def _validation_problem(exc: ValidationError) -> bytes:
    errors = [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return _json(
        {
            "type": PROBLEM_BASE + "validation",
            "title": "Invalid request",
            "status": 422,
            "detail": "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:10]),
            "instance": PATH,
            "errors": errors,
        }
    )


def _json(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()
