"""``POST /api/v1/tools/execute``: the AI agent's only way to act on the tenant's tools."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from letsbe_agent.runtime import agent_of
from letsbe_platform.errors import Unauthorized
from letsbe_platform.tls import client_context
from letsbe_platform.web import problems
from letsbe_safety_wrapper.tools import commands
from letsbe_safety_wrapper.tools.approvals import HubApprovals
from letsbe_safety_wrapper.tools.errors import NotConfigured
from letsbe_safety_wrapper.tools.runtime import build_tool_service
from letsbe_safety_wrapper.tools.schemas import ToolCall, ToolCallOutcome, ToolsStatus
from letsbe_safety_wrapper.tools.service import ToolService


@asynccontextmanager
async def tools_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Runs inside the app's lifespan (FastAPI merges router lifespans), so settings are already there."""
    settings = app.state.settings
    agent = agent_of(app.state.runtime)  # None when no hub is configured (then gated calls cannot get approved)
    async with httpx.AsyncClient(timeout=settings.tool_timeout_seconds, follow_redirects=False,
                                 verify=client_context()) as client:
        approvals = getattr(app.state, "tool_approvals", None)
        hub_key = None
        if agent is not None and settings.hub_url:
            # The agent's current credential, read per call: re-enrolment or rotation needs no restart here.
            def hub_key() -> str | None:
                return agent.credential.api_key if agent.credential else None
        if approvals is None and hub_key is not None:
            approvals = HubApprovals(client, settings.hub_url, hub_key)
        app.state.tools = build_tool_service(settings, client, approvals=approvals, hub_key=hub_key)
        if agent is not None:
            commands.register(agent.commands, app.state.tools, agent.docker)
        yield


router = APIRouter(prefix="/api/v1/tools", tags=["tools"], lifespan=tools_lifespan)
_bearer = HTTPBearer(
    scheme_name="toolsToken", auto_error=False, description="The AI agent's tools token (LETSBE_SW_TOOLS_TOKEN)"
)


async def _service(request: Request) -> ToolService:  # async: a sync dependency would cost a thread hop
    tools: ToolService | None = getattr(request.app.state, "tools", None)
    if tools is None:
        raise NotConfigured("Tool execution is starting or not configured.")
    return tools


async def _agent(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    token = request.app.state.settings.tools_token
    if token is None:
        raise NotConfigured("No tools token is configured (LETSBE_SW_TOOLS_TOKEN), so every tool call is refused.")
    given = credentials.credentials if credentials else ""
    # Compare digests: constant time whatever the lengths.
    if not hmac.compare_digest(hashlib.sha256(given.encode()).digest(),
                               hashlib.sha256(token.get_secret_value().encode()).digest()):
        raise Unauthorized("Send the tools token as 'Authorization: Bearer <token>'.")


Tools = Annotated[ToolService, Depends(_service)]
Agent = Depends(_agent)


@router.post(
    "/execute", name="execute", dependencies=[Agent],
    responses={
        202: {"model": ToolCallOutcome, "description": "Gated: waiting for approval"},
        **problems(403, 404, 409, 423, 429, 502),  # 403: a SECRET_REF where none may go; 404: unknown approval
    },
    # The body is parsed by the tool service (strictly, and a malformed call is audited too), so its schema is
    # declared here rather than by a parameter.
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": ToolCall.model_json_schema(ref_template="#/components/schemas/{model}")}}}},
)
async def execute(request: Request, tools: Tools, response: Response) -> ToolCallOutcome:
    """Run a tool call if the policy and the autonomy level allow it; otherwise ask the hub for approval (202)
    and run it when the agent repeats the exact call with the ``approval_id``."""
    cap = request.app.state.settings.max_request_bytes
    outcome = await tools.execute_raw(await _read_capped(request, cap), cap)
    if outcome.status == "pending_approval":
        response.status_code = 202
    return outcome


@router.get("", name="status", dependencies=[Agent])
async def status(tools: Tools) -> ToolsStatus:
    """The autonomy level, the kill switch, and every known action with what would happen to it now."""
    return tools.status()


async def _read_capped(request: Request, cap: int) -> bytes:
    """The body, or its first ``cap + 1`` bytes: enough to know it is too large without holding the rest (the
    gate then refuses and audits it; the shared body limit leaves this route to the gate)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        chunks.append(chunk[: cap + 1 - size])
        size += len(chunks[-1])
        if size > cap:
            break
    return b"".join(chunks)

