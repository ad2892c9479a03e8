import uuid
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from letsbe_contracts.validation import RequestModel
from letsbe_hub.auth.dependencies import Authorized
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.auth.service import create_token, get_token, list_tokens, revoke_token
from letsbe_platform.errors import NotFound
from letsbe_platform.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from letsbe_platform.web import SessionDep

router = APIRouter(prefix="/api/v1/admin/tokens", tags=["tokens"])


class TokenCreate(RequestModel):
    name: str = Field(min_length=1, max_length=120)
    scopes: list[Scope] = Field(min_length=1)


class TokenCreated(BaseModel):
    id: uuid.UUID
    name: str
    scopes: list[str]
    created_at: datetime
    token: str = Field(description="Shown once. Store it now: the hub keeps only its hash.")


class Token(BaseModel):
    """A token as listed: never its value (the hub keeps only a hash of it)."""

    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    name: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@router.get("", name="list")
async def list_(
    session: SessionDep,
    _: Authorized(Scope.TOKENS_ADMIN),
    status: Literal["active", "revoked", "all"] = "active",
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[Token]:
    """Newest first; page with ``next_cursor``. Who can reach the API, to review and revoke."""
    revoked = None if status == "all" else status == "revoked"
    rows, next_cursor = await list_tokens(session, revoked=revoked, limit=limit, cursor=cursor)
    return Page(items=[Token.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get("/{token_id}", name="get")
async def get(token_id: uuid.UUID, session: SessionDep, _: Authorized(Scope.TOKENS_ADMIN)) -> Token:
    row = await get_token(session, token_id)
    if row is None:
        raise NotFound("No token with that id.")
    return Token.model_validate(row)


@router.post("", name="create", status_code=status.HTTP_201_CREATED)
async def create(body: TokenCreate, session: SessionDep, _: Authorized(Scope.TOKENS_ADMIN)) -> TokenCreated:
    row, plaintext = await create_token(session, body.name, body.scopes)
    await session.refresh(row)
    return TokenCreated(id=row.id, name=row.name, scopes=row.scopes, created_at=row.created_at, token=plaintext)


@router.delete("/{token_id}", name="revoke", status_code=status.HTTP_204_NO_CONTENT)
async def revoke(token_id: uuid.UUID, session: SessionDep, _: Authorized(Scope.TOKENS_ADMIN)) -> None:
    if not await revoke_token(session, token_id):
        raise NotFound("No active token with that id.")
