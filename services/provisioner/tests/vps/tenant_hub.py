"""The provisioner's hub stand-in plus what the tenant's real agents talk to on the test VPS: the agent protocol's
registration, heartbeat and command poll (letsbe_contracts.agent models, validated as the hub validates them), and
the LLM relay (``LLM_RELAY_PATH``) as an OpenAI-compatible fake that accepts only the relay key the hub issued.
Agents are registered only when they register themselves with a token the hub issued (no ``auto_register``)."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import Header, HTTPException
from hub_standin import HubStandIn

from letsbe_contracts.agent import LLM_RELAY_PATH, HeartbeatRequest, RegisterRequest
from letsbe_fakes.openai import FakeOpenAI

HEARTBEAT_SECONDS = 5


class TenantHub(HubStandIn):
    def __init__(self, api_token: str):
        super().__init__(api_token, auto_register=False)
        self.relay = FakeOpenAI(api_key="lbl_none_issued_yet")  # none valid until issued
        self.relay.reply = "pong from the hub's relay"
        self.agent_keys: dict[str, tuple[uuid.UUID, str]] = {}  # api key -> (tenant, agent)
        self.heartbeats: list[tuple[uuid.UUID, str]] = []
        used: set[str] = set()

        def agent_of(authorization: str | None) -> tuple[uuid.UUID, str]:
            key = (authorization or "").removeprefix("Bearer ")
            if key not in self.agent_keys:
                raise HTTPException(401, {"detail": "unknown credential", "re_enrol": True})
            return self.agent_keys[key]

        @self.app.post("/api/v1/tenant/register", status_code=201)
        async def register(body: RegisterRequest) -> dict[str, Any]:
            issued = next((t for t in self.issued if t["token"] == body.registration_token), None)
            if issued is None or body.registration_token in used:
                raise HTTPException(401, "unknown or used registration token")
            used.add(body.registration_token)
            self.register(issued["tenant_id"], body.agent.value)
            agent_id = next(a["agent_id"] for a in self.tenants[issued["tenant_id"]]["agents"]
                            if a["agent"] == body.agent.value)  # fmt: skip
            key = "lba_" + secrets.token_urlsafe(24)
            self.agent_keys[key] = (issued["tenant_id"], body.agent.value)
            return {"agent_id": agent_id, "tenant_id": str(issued["tenant_id"]), "api_key": key,
                    "heartbeat_interval_seconds": HEARTBEAT_SECONDS}  # fmt: skip

        @self.app.post("/api/v1/tenant/heartbeat")
        async def heartbeat(body: HeartbeatRequest, authorization: str | None = Header(default=None)) -> dict:
            tenant_id, agent = agent_of(authorization)
            self.heartbeats.append((tenant_id, agent))
            for a in self.tenants[tenant_id]["agents"]:
                if a["agent"] == agent:
                    a["last_heartbeat_at"] = datetime.now(UTC).isoformat()
            return {"interval_seconds": HEARTBEAT_SECONDS, "commands": []}

        @self.app.get("/api/v1/tenant/commands")
        async def commands(wait: int = 0, authorization: str | None = Header(default=None)) -> dict:
            agent_of(authorization)
            await asyncio.sleep(min(wait, 2))  # a short long-poll: the server stops quickly at the end
            return {"commands": []}

        self.app.mount(LLM_RELAY_PATH.removesuffix("/v1"), self.relay.app)
