"""A loopback STAND-IN OF OUR OWN HUB's contract — only the admin tenant routes the provisioner calls
(POST /api/v1/admin/tenants/{id}/registration-tokens, POST …/{id}/llm-key, PUT …/{id}/credentials, GET …/{id}),
as specified in
notes/interfaces.md. The real routes live in letsbe_hub.tenants; the end-to-end tests run against those.
This is not a provider fake (those live in letsbe_fakes); it exists so the provisioner's tests do not depend on
another team's work in progress.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI, Header, HTTPException, Response
from pydantic import BaseModel, ConfigDict


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    domain: str
    order_id: uuid.UUID
    tier: str
    region: str
    server_id: uuid.UUID | None = None


class HubStandIn:
    def __init__(self, api_token: str, *, auto_register: bool = True, token_prefix: str = "rt_"):  # noqa: S107 - a prefix, not a secret
        self.api_token = api_token
        self.auto_register = auto_register  # an issued token is "used" by the agent at once
        self.token_prefix = token_prefix
        self.issued: list[dict[str, Any]] = []
        self.llm_keys: list[str] = []
        self.polls = 0
        self.tenants: dict[uuid.UUID, dict[str, Any]] = {}
        self.credentials: dict[uuid.UUID, list[dict[str, Any]]] = {}
        # The off-site storage the hub hands out (endpoint, region, bucket, keys); None: not configured (409).
        self.offsite: dict[str, str] | None = None
        self.backup_targets: dict[uuid.UUID, dict[str, str]] = {}
        self.app = FastAPI()

        def check(authorization: str | None) -> None:
            if authorization != f"Bearer {self.api_token}":
                raise HTTPException(401, "bad token")

        @self.app.post("/api/v1/admin/tenants/{tenant_id}/registration-tokens", status_code=201)
        async def issue(
            tenant_id: uuid.UUID, body: TokenRequest, authorization: str | None = Header(default=None)
        ) -> dict[str, Any]:
            check(authorization)
            token = self.token_prefix + secrets.token_urlsafe(24)
            self.issued.append({"tenant_id": tenant_id, "token": token, **body.model_dump(mode="json")})
            tenant = self.tenants.setdefault(
                tenant_id, {"tenant_id": str(tenant_id), "domain": body.domain, "status": "PROVISIONING", "agents": []}
            )
            if self.auto_register:
                self.register(tenant_id)
            del tenant
            return {"token": token, "expires_at": (datetime.now(UTC) + timedelta(minutes=30)).isoformat()}

        @self.app.put("/api/v1/admin/tenants/{tenant_id}/credentials", status_code=204)
        async def put_credentials(
            tenant_id: uuid.UUID, body: dict[str, Any], authorization: str | None = Header(default=None)
        ) -> Response:
            check(authorization)
            self.credentials[tenant_id] = body["credentials"]
            return Response(status_code=204)

        @self.app.post("/api/v1/admin/tenants/{tenant_id}/llm-key", status_code=201)
        async def llm_key(tenant_id: uuid.UUID, authorization: str | None = Header(default=None)) -> dict[str, Any]:
            check(authorization)
            if tenant_id not in self.tenants:
                raise HTTPException(404, "no such tenant")
            self.llm_keys.append("lbl_" + secrets.token_urlsafe(24))
            return {"key": self.llm_keys[-1], "previous_valid_until": None}

        @self.app.post("/api/v1/admin/tenants/{tenant_id}/backup-target")
        async def backup_target(
            tenant_id: uuid.UUID, authorization: str | None = Header(default=None)
        ) -> dict[str, Any]:
            check(authorization)
            if self.offsite is None:
                raise HTTPException(409, "no off-site storage configured")
            return self.backup_targets.setdefault(
                tenant_id,
                {
                    **self.offsite,
                    "prefix": f"tenants/{tenant_id}",
                    "crypt_password": secrets.token_urlsafe(24),
                    "crypt_salt": secrets.token_urlsafe(24),
                },
            )

        @self.app.get("/api/v1/admin/tenants/{tenant_id}")
        async def get_tenant(tenant_id: uuid.UUID, authorization: str | None = Header(default=None)) -> dict[str, Any]:
            check(authorization)
            self.polls += 1
            if tenant_id not in self.tenants:
                raise HTTPException(404, "no such tenant")
            return self.tenants[tenant_id]

    def register(self, tenant_id: uuid.UUID, agent: str = "safety-wrapper") -> None:
        agents = self.tenants[tenant_id]["agents"]
        if not any(a["agent"] == agent for a in agents):
            agents.append(
                {
                    "agent_id": str(uuid.uuid4()),
                    "agent": agent,
                    "registered_at": datetime.now(UTC).isoformat(),
                    "last_heartbeat_at": None,
                }
            )
