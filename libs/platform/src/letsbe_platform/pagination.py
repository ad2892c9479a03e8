"""One shape for every list an API answers, and the keyset cursor that pages through it.

Every list route answers ``{"items": [...], "next_cursor": "…" | null}`` (:class:`Page`), takes ``?limit=``
(:data:`Limit`: 1 to :data:`MAX_LIMIT`, default :data:`DEFAULT_LIMIT`) and ``?cursor=`` (:data:`Cursor`: the
``next_cursor`` of the page before). A client follows ``next_cursor`` until it is null.

The cursor is the sort key of the last row handed out (keyset pagination, :class:`Keyset`), never an offset: the
next page starts strictly after that key, so rows inserted or deleted while a client pages neither shift the
rest nor make a row come twice. Each list sorts on immutable columns ending in a unique one.

A cursor is opaque and URL-safe: the key values as JSON, behind a checksum keyed with the list's name. It grants
nothing (it names a position in a list the caller may read anyway, and its values reach SQL as typed bound
parameters); the checksum and the typed decoding make an edited, truncated or foreign cursor (another list's) a
400 problem+json rather than a surprising page or a 500.

SQLAlchemy is imported here: the tenant agents, which list nothing, never import this module.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field
from sqlalchemy import Select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from letsbe_platform.errors import DomainError

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_CURSOR_CHARS = 512
_TAG_BYTES = 9  # 12 base64 characters
_BIGINT = 2**63

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """A page of a list; ``next_cursor`` is null on the last page."""

    items: list[T]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= to get the next page (opaque); null on the last page."
    )


Limit = Annotated[
    int,
    Query(ge=1, le=MAX_LIMIT, description=f"Items per page: 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})."),
]
Cursor = Annotated[
    str | None,
    Query(description="The next_cursor of the previous page (opaque). A cursor this list did not hand out is a 400."),
]


class InvalidCursor(DomainError):
    status_code, type, title = 400, "invalid-cursor", "Invalid cursor"


class Keyset:
    """The sort order of one list, and its cursors. ``columns`` are immutable and end in a unique one; all sort in
    one direction (newest first: ``descending``), so one row comparison ``(a, b) < (:a, :b)`` finds the next page.
    ``name`` keys the checksum: a cursor of another list does not decode here."""

    def __init__(self, name: str, *columns: InstrumentedAttribute[Any], descending: bool = True):
        self.name = name
        self.columns = columns
        self.descending = descending
        self._types = [c.type.python_type for c in columns]
        self._key = name.encode()

    def encode(self, row: Any) -> str:
        values = [_plain(getattr(row, c.key)) for c in self.columns]
        body = json.dumps(values, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(self._tag(body) + body).decode().rstrip("=")

    def decode(self, cursor: str) -> tuple[Any, ...]:
        """The key values of ``cursor``, or :class:`InvalidCursor`."""
        try:
            if len(cursor) > MAX_CURSOR_CHARS:
                raise ValueError("too long")
            raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
            tag, body = raw[:_TAG_BYTES], raw[_TAG_BYTES:]
            if not hmac.compare_digest(tag, self._tag(body)):
                raise ValueError("checksum")
            values = json.loads(body)
            if not isinstance(values, list) or len(values) != len(self.columns):
                raise ValueError("shape")
            return tuple(_typed(t, v) for t, v in zip(self._types, values, strict=True))
        except (ValueError, TypeError, OverflowError, binascii.Error):
            raise InvalidCursor(
                "The cursor is not one this list handed out: start again without it.", param="cursor"
            ) from None

    def order(self, stmt: Select[Any], *, limit: int, cursor: str | None) -> Select[Any]:
        """``stmt`` in this order from just after ``cursor``, one row more than ``limit`` (is there a next page?)."""
        if cursor:
            key, after = tuple_(*self.columns), tuple_(*self.decode(cursor))
            stmt = stmt.where(key < after if self.descending else key > after)
        return stmt.order_by(*(c.desc() if self.descending else c.asc() for c in self.columns)).limit(limit + 1)

    def cut(self, rows: Sequence[T], limit: int) -> tuple[list[T], str | None]:
        """The first ``limit`` of ``rows`` (fetched by :meth:`order`) and the cursor of the page after them."""
        page = list(rows[:limit])
        return page, self.encode(page[-1]) if len(rows) > limit and page else None

    async def fetch(
        self, session: AsyncSession, stmt: Select[Any], *, limit: int, cursor: str | None
    ) -> tuple[list[Any], str | None]:
        """One page of the entities ``stmt`` selects, and the next cursor (None on the last page)."""
        rows = (await session.execute(self.order(stmt, limit=limit, cursor=cursor))).scalars().all()
        return self.cut(rows, limit)

    def _tag(self, body: bytes) -> bytes:
        return hashlib.blake2b(body, key=self._key, digest_size=_TAG_BYTES).digest()


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _typed(kind: type, value: Any) -> Any:
    """A JSON value back as the column's type; ValueError/TypeError for anything else."""
    if kind is datetime:
        at = datetime.fromisoformat(value)
        if at.tzinfo is None:
            raise ValueError("naive time")
        return at.astimezone(UTC)  # OverflowError at the ends of the calendar
    if kind is uuid.UUID:
        return uuid.UUID(value)
    if kind is int:
        if type(value) is not int or not -_BIGINT <= value < _BIGINT:
            raise ValueError("not a bigint")
        return value
    if kind is str:
        if not isinstance(value, str) or "\x00" in value:
            raise TypeError("not text")
        return value
    raise TypeError(f"no cursor for {kind.__name__} columns")
