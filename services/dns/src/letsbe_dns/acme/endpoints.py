"""POST / DELETE /api/v1/tenant/acme-challenge: called by the tenant's certbot manual hooks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials

from letsbe_contracts.hub import AgentPrincipal
from letsbe_dns.acme.schemas import AcmeChallenge, AcmeChallengeRecord
from letsbe_dns.acme.service import AcmeService
from letsbe_platform.web import AGENT_CREDENTIAL, problems

router = APIRouter(prefix="/api/v1/tenant", tags=["acme"])


async def current_agent(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(AGENT_CREDENTIAL)]
) -> AgentPrincipal:
    """The agent's own credential (the hub's agent API key), checked by the hub."""
    authorization = f"Bearer {credentials.credentials}" if credentials else None
    return await request.app.state.hub_agents.whoami(authorization)


def acme_service(request: Request) -> AcmeService:
    return request.app.state.acme


CurrentAgent = Annotated[AgentPrincipal, Depends(current_agent)]
Acme = Annotated[AcmeService, Depends(acme_service)]


@router.post(
    "/acme-challenge",
    name="acme_challenge_set",
    status_code=status.HTTP_201_CREATED,
    responses=problems(502, 504),
    summary="Publish _acme-challenge.<domain> TXT and return once the zone's nameservers serve it",
)
async def set_challenge(body: AcmeChallenge, agent: CurrentAgent, acme: Acme) -> AcmeChallengeRecord:
    return await acme.set(agent, body)


@router.delete(
    "/acme-challenge",
    name="acme_challenge_remove",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(502),
    summary="Remove the _acme-challenge TXT with this value (no error when it is already gone)",
)
async def remove_challenge(body: AcmeChallenge, agent: CurrentAgent, acme: Acme) -> Response:
    await acme.remove(agent, body)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
