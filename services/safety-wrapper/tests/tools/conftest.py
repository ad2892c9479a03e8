"""Fixtures: the wrapper app in-process, a loopback HTTP receiver standing in for a tenant tool, and an
approval authority with the hub's rules (in memory; the hub's own API is tested in hub-api/tests/approvals)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from cryptography.fernet import Fernet
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from letsbe_contracts.approvals import Approval, ApprovalCreate, ApprovalStatus
from letsbe_fakes import LoopbackServer
from letsbe_safety_wrapper.app import create_app
from letsbe_safety_wrapper.config import SafetyWrapperSettings
from letsbe_safety_wrapper.tools.errors import ApprovalExpired, ApprovalMismatch, ApprovalNotFound, ApprovalUsed
from letsbe_safety_wrapper.tools.secrets import SecretStore
from letsbe_safety_wrapper.tools.service import ToolService

TOOLS_TOKEN = "agent-tools-token-for-tests"
TENANT = uuid.UUID("00000000-0000-0000-0000-0000000000aa")

GHOST_AUTH = {"Authorization": "Ghost SECRET_REF(ghost_key)"}
# A small policy for the wire tests: one tool, one action per class, tight limits where a test needs them.
TEST_POLICY: dict[str, Any] = {
    "version": 1,
    "default_autonomy_level": 2,
    "autonomy_levels": {
        "1": {"name": "supervised", "execute": ["GREEN"]},
        "2": {"name": "balanced", "execute": ["GREEN", "YELLOW"]},
        "3": {"name": "trusted", "execute": ["GREEN", "YELLOW", "YELLOW_EXTERNAL"]},
    },
    "approval_ttl_seconds": {"YELLOW": 600, "YELLOW_EXTERNAL": 600, "RED": 600, "CRITICAL_RED": 300},
    "default_limits": {"per_minute": 100, "loop_repeats": 50, "loop_window_seconds": 60},
    "tools": {
        "ghost": {
            "actions": {
                "posts.list": {"class": "GREEN", "http": {"method": "GET", "path": "/ghost/api/admin/posts/",
                                                         "headers": GHOST_AUTH}},
                "posts.update": {"class": "YELLOW", "http": {"method": "PUT", "path": "/ghost/api/admin/posts/{id}/",
                                                            "headers": GHOST_AUTH}},
                "posts.publish": {"class": "YELLOW_EXTERNAL",
                                  "http": {"method": "PUT", "path": "/ghost/api/admin/posts/{id}/"}},
                "posts.delete": {"class": "CRITICAL_RED",
                                 "http": {"method": "DELETE", "path": "/ghost/api/admin/posts/{id}/"}},
                "echo": {"class": "GREEN", "http": {"method": "POST", "path": "/echo"}, "secret_args": ["config", "x"]},
            }
        },
        "listmonk": {
            "limits": {"per_minute": 3, "loop_repeats": 2, "loop_window_seconds": 60},
            "actions": {"campaigns.list": {"class": "GREEN", "http": {"method": "GET", "path": "/api/campaigns"}}},
        },
        "nextcloud": {"actions": {"files.read": {"class": "GREEN", "http": {"method": "GET", "path": "/f/{path}"}}}},
    },
    "escalations": [],
}


class ToolReceiver:
    """Stands in for a tool's API on loopback: records every request, answers JSON (and echoes bodies)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.app = FastAPI()

        @self.app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
        async def any_route(path: str, request: Request) -> JSONResponse:
            body = await request.body()
            seen = {"method": request.method, "path": "/" + path, "query": dict(request.query_params),
                    "headers": dict(request.headers), "body": json.loads(body) if body else None}
            self.requests.append(seen)
            if path == "echo":  # a tool that returns what it was given (e.g. a config dump with the password)
                return JSONResponse({"echo": seen["body"], "auth": request.headers.get("authorization")})
            return JSONResponse({"ok": True, "path": "/" + path})


@dataclass
class MemoryApprovals:
    """The hub's approval rules, in memory: dedupe pending by hash, decide once, consume once, expire."""

    items: dict[uuid.UUID, Approval] = field(default_factory=dict)
    requests: list[ApprovalCreate] = field(default_factory=list)
    now: Any = None

    def _now(self) -> datetime:
        return self.now or datetime.now(UTC)

    async def request(self, body: ApprovalCreate) -> Approval:
        self.requests.append(body)
        for a in self.items.values():
            if a.args_hash == body.args_hash and a.status is ApprovalStatus.PENDING:
                return a
        a = Approval(id=uuid.uuid4(), tenant_id=TENANT, tool=body.tool, action=body.action,
                     risk_class=body.risk_class, args_hash=body.args_hash, args_preview=body.args_preview,
                     reasons=body.reasons, status=ApprovalStatus.PENDING, requested_at=self._now(),
                     expires_at=self._now() + timedelta(seconds=body.ttl_seconds))
        self.items[a.id] = a
        return a

    async def get(self, approval_id: uuid.UUID) -> Approval:
        if approval_id not in self.items:
            raise ApprovalNotFound("no such approval")
        return self.items[approval_id]

    async def consume(self, approval_id: uuid.UUID, args_hash: str) -> Approval:
        a = await self.get(approval_id)
        if a.args_hash != args_hash:
            raise ApprovalMismatch("different arguments")
        if a.expires_at <= self._now():
            raise ApprovalExpired("expired")
        if a.status is not ApprovalStatus.APPROVED:
            raise ApprovalUsed("not approved or used")
        self.items[approval_id] = a.model_copy(update={"status": ApprovalStatus.CONSUMED, "consumed_at": self._now()})
        return self.items[approval_id]

    def decide(self, approval_id: uuid.UUID, status: ApprovalStatus, by: str = "operator@letsbe") -> None:
        a = self.items[approval_id]
        self.items[approval_id] = a.model_copy(update={"status": status, "decided_by": by,
                                                       "decided_at": self._now()})

    def expire(self, approval_id: uuid.UUID) -> None:
        a = self.items[approval_id]
        self.items[approval_id] = a.model_copy(update={"expires_at": self._now() - timedelta(seconds=1)})


@pytest.fixture
def receiver() -> Iterator[tuple[ToolReceiver, int]]:
    r = ToolReceiver()
    with LoopbackServer(r.app) as srv:
        yield r, srv.port


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(TEST_POLICY))
    return path


@pytest.fixture
def secrets_key() -> str:
    return Fernet.generate_key().decode()


@dataclass
class Wrapper:
    client: httpx.AsyncClient
    app: FastAPI
    receiver: ToolReceiver
    approvals: MemoryApprovals
    settings: SafetyWrapperSettings
    store: SecretStore

    @property
    def tools(self) -> ToolService:
        return self.app.state.tools

    async def call(self, tool: str, action: str, args: dict[str, Any] | None = None, **extra: Any) -> httpx.Response:
        body = {"tool": tool, "action": action, "args": args or {}, **extra}
        return await self.client.post("/api/v1/tools/execute", json=body)


@pytest.fixture
async def wrapper(tmp_path: Path, receiver: tuple[ToolReceiver, int], secrets_key: str,
                  policy_file: Path) -> AsyncIterator[Wrapper]:
    rec, port = receiver
    policy_path = policy_file
    settings = SafetyWrapperSettings(
        tools_token=TOOLS_TOKEN, tools_policy_path=policy_path, tools_dir=tmp_path / "tools",
        secrets_path=tmp_path / "secrets.enc", secrets_key=secrets_key,
        tool_ports={"ghost": port, "listmonk": port, "nextcloud": port}, log_json=False,
    )
    store = SecretStore(settings.secrets_path, secrets_key)
    store.put("ghost_key", "ghost-admin-key-0123456789abcdef", ["ghost"])
    store.put("db_password", "Sup3r-S3cret-DB-pass!", ["ghost"])
    store.put("nextcloud_pw", "nc-password-only-for-nextcloud", ["nextcloud"])
    approvals = MemoryApprovals()
    app = create_app(settings)
    app.state.tool_approvals = approvals
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sw",
                                     headers={"Authorization": f"Bearer {TOOLS_TOKEN}"}) as client:
            yield Wrapper(client, app, rec, approvals, settings, store)
