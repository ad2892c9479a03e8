"""``require_scope`` guards every admin route: missing/unknown token → 401, token without the scope → 403."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Security
from fastapi.security import HTTPAuthorizationCredentials

from letsbe_hub.auth.scopes import Scope
from letsbe_hub.auth.service import Principal, authenticate
from letsbe_platform.errors import Forbidden, Unauthorized
from letsbe_platform.web import OPERATOR_TOKEN, SessionDep

_bearer = OPERATOR_TOKEN


async def current_principal(
    session: SessionDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    if credentials is None or not credentials.credentials:
        raise Unauthorized("Send an API token as 'Authorization: Bearer <token>'.")
    principal = await authenticate(session, credentials.credentials)
    if principal is None:
        raise Unauthorized("The API token is unknown or revoked.")
    return principal


def require_scope(scope: Scope):
    async def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if scope.value not in principal.scopes:
            raise Forbidden(f"This token lacks the '{scope.value}' scope.", required_scope=scope.value)
        return principal

    check.__name__ = f"require_{scope.name.lower()}"
    return check


def Authorized(scope: Scope) -> type[Principal]:
    """``principal: Authorized(Scope.ORDERS_READ)`` in an endpoint signature (Security: the OpenAPI names the scope)."""
    return Annotated[Principal, Security(require_scope(scope), scopes=[scope.value])]  # type: ignore[return-value]
