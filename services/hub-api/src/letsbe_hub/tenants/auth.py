"""Agent authentication: ``agent: CurrentAgent`` in a tenant route's signature.

A missing header is a plain 401; an unknown or revoked credential is a 401 with ``{"re_enrol": true}``, which tells
the agent to register again (with a new registration token). The check runs in its own short transaction, so a
long-poll route does not hold a database connection while it waits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials

from letsbe_contracts.enums import AgentKind
from letsbe_hub.auth.dependencies import current_principal
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.auth.service import Principal
from letsbe_hub.auth.service import hash_token as hash_key
from letsbe_hub.tenants import repository as repo
from letsbe_hub.tenants.errors import ReEnrol
from letsbe_platform.db import unit_of_work
from letsbe_platform.errors import Forbidden, Unauthorized
from letsbe_platform.web import AGENT_CREDENTIAL

_bearer = AGENT_CREDENTIAL


@dataclass(frozen=True)
class AgentPrincipal:
    tenant_id: uuid.UUID
    agent_id: uuid.UUID
    kind: AgentKind
    domain: str
    credential_id: uuid.UUID


def bearer_key(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or not credentials.credentials:
        raise Unauthorized("Send the agent API key as 'Authorization: Bearer <key>'.")
    return credentials.credentials


async def current_agent(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> AgentPrincipal:
    key = bearer_key(credentials)
    async with unit_of_work(request.app.state.runtime.sessions) as session:
        found = await repo.find_credential(session, hash_key(key))
    if found is None:
        raise ReEnrol()
    agent, credential = found
    return AgentPrincipal(
        tenant_id=agent.tenant_id,
        agent_id=agent.id,
        kind=AgentKind(agent.kind),
        domain=agent.domain,
        credential_id=credential.id,
    )


CurrentAgent = Annotated[AgentPrincipal, Depends(current_agent)]


def any_scope(*scopes: Scope):
    """Admin routes that more than one kind of caller reads (the provisioner and operators)."""

    async def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if not any(s.value in principal.scopes for s in scopes):
            raise Forbidden(
                f"This token needs one of the scopes {', '.join(s.value for s in scopes)}.",
                required_scope=[s.value for s in scopes],
            )
        return principal

    check.__name__ = "require_" + "_or_".join(s.name.lower() for s in scopes)
    return Annotated[Principal, Security(check, scopes=[s.value for s in scopes])]
