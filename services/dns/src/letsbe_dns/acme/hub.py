"""Who is calling? The hub knows: forward the agent's own Authorization header to GET /api/v1/tenant/me."""

from __future__ import annotations

import httpx
from pydantic import ValidationError

from letsbe_contracts.hub import AgentPrincipal
from letsbe_dns.acme.errors import AgentNotAuthenticated, HubUnavailable
from letsbe_platform.logging import get_logger

log = get_logger(__name__)

ME_PATH = "/api/v1/tenant/me"


class HubAgents:
    def __init__(self, client: httpx.AsyncClient):
        self.client = client  # base_url = LETSBE_DNS_HUB_URL, built in lifespan

    async def whoami(self, authorization: str | None) -> AgentPrincipal:
        if not authorization or not authorization.strip():
            raise AgentNotAuthenticated("send the agent's credential as the Authorization header")
        try:
            response = await self.client.get(ME_PATH, headers={"Authorization": authorization})
        except httpx.HTTPError as exc:
            log.warning("hub unreachable", error=type(exc).__name__)
            raise HubUnavailable("the hub did not answer; try again") from None
        if response.status_code in (401, 403):
            extra = {}
            try:
                body = response.json()
            except ValueError:
                body = None
            if isinstance(body, dict) and body.get("re_enrol"):
                extra["re_enrol"] = True
            raise AgentNotAuthenticated("the hub rejected this agent credential", **extra)
        if response.status_code != 200:
            raise HubUnavailable(f"the hub answered {response.status_code}")
        try:
            return AgentPrincipal.model_validate(response.json())
        except (ValueError, ValidationError):
            raise HubUnavailable("the hub's answer was not an agent principal") from None
