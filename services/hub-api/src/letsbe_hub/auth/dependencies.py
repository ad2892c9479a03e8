"""``require_scope`` guards every admin route: missing/unknown token → 401, token without the scope → 403."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from letsbe_hub.auth.scopes import Scope
from letsbe_hub.auth.service import Principal, authenticate
from letsbe_platform.errors import Forbidden, Unauthorized
from letsbe_platform.web import SessionDep

_bearer = HTTPBearer(auto_error=False, description="An admin/ops API token (lbh_…)")


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
    """``principal: Authorized(Scope.ORDERS_READ)`` in an endpoint signature."""
    return Annotated[Principal, Depends(require_scope(scope))]  # type: ignore[return-value]
