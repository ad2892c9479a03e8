"""Keyset cursors: opaque and URL-safe, and anything but a cursor this list handed out is a 400 problem."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from sqlalchemy import BigInteger, DateTime, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapped, mapped_column

from letsbe_platform.db import make_base
from letsbe_platform.pagination import InvalidCursor, Keyset

Base = make_base("pagination_test")


class Row(Base):
    __tablename__ = "rows"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    seq: Mapped[int] = mapped_column(BigInteger)


KEYSET = Keyset("rows", Row.created_at, Row.id)
AT = datetime(2026, 12, 2, 3, 4, 5, 123456, tzinfo=UTC)


def row(at: datetime = AT, rid: uuid.UUID | None = None) -> SimpleNamespace:
    return SimpleNamespace(created_at=at, id=rid or uuid.uuid4(), seq=1)


def forged(values: list, name: str = "rows") -> str:
    """A cursor with a correct checksum over any values: what the typed decoding alone must refuse."""
    body = json.dumps(values).encode()
    tag = hashlib.blake2b(body, key=name.encode(), digest_size=9).digest()
    return base64.urlsafe_b64encode(tag + body).decode().rstrip("=")


def test_a_cursor_is_url_safe_and_gives_back_the_key_of_its_row():
    r = row(AT.astimezone(timezone(timedelta(hours=2))))
    cursor = KEYSET.encode(r)
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert KEYSET.decode(cursor) == (AT, r.id)


def _edited(cursor: str) -> str:
    flip = "A" if cursor[20] != "A" else "B"
    return cursor[:20] + flip + cursor[21:]


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda good: "not-a-cursor", id="garbage"),
        pytest.param(lambda good: "", id="empty-but-given"),
        pytest.param(_edited, id="one-character-edited"),
        pytest.param(lambda good: good[:-3], id="truncated"),
        pytest.param(lambda good: good + "=" * 3 + "!", id="not-base64url"),
        pytest.param(lambda good: "A" * 10_000, id="over-long"),
        pytest.param(lambda good: Keyset("other", Row.created_at, Row.id).encode(row()), id="another-lists-cursor"),
        pytest.param(lambda good: forged(["2026-12-02T03:04:05", str(uuid.uuid4())]), id="naive-time"),
        pytest.param(lambda good: forged([AT.isoformat()]), id="too-few-values"),
        pytest.param(lambda good: forged([AT.isoformat(), "not-a-uuid"]), id="not-a-uuid"),
        pytest.param(lambda good: forged([12, str(uuid.uuid4())]), id="a-number-for-a-time"),
        pytest.param(lambda good: forged({"a": 1}), id="not-a-list"),
        pytest.param(lambda good: forged(["0001-01-01T00:00:00+05:00", str(uuid.uuid4())]), id="before-year-1-in-utc"),
    ],
)
def test_anything_but_a_cursor_of_this_list_is_an_invalid_cursor(make):
    good = KEYSET.encode(row())
    with pytest.raises(InvalidCursor) as caught:
        KEYSET.decode(make(good))
    problem = caught.value.problem("/x")
    assert (problem["status"], problem["type"].rsplit("/", 1)[1], problem["param"]) == (400, "invalid-cursor", "cursor")


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 1.5, True, "7"])
def test_integer_keys_stay_in_bigint_range_and_type(value):
    keyset = Keyset("seqs", Row.seq, Row.id)
    with pytest.raises(InvalidCursor):
        keyset.decode(forged([value, str(uuid.uuid4())], "seqs"))
    assert keyset.decode(forged([2**63 - 1, str(uuid.uuid4())], "seqs"))[0] == 2**63 - 1


def test_the_next_page_starts_strictly_after_the_cursor_in_one_row_comparison():
    cursor = KEYSET.encode(row())
    newest_first = KEYSET.order(select(Row), limit=10, cursor=cursor)
    sql = str(newest_first.compile(dialect=postgresql.dialect()))
    assert "(pagination_test.rows.created_at, pagination_test.rows.id) < (" in sql
    assert "ORDER BY pagination_test.rows.created_at DESC, pagination_test.rows.id DESC" in sql
    assert "LIMIT" in sql  # limit + 1: one more row says whether there is a next page
    oldest_first = Keyset("rows", Row.created_at, Row.id, descending=False).order(select(Row), limit=10, cursor=None)
    assert "ORDER BY pagination_test.rows.created_at ASC, pagination_test.rows.id ASC" in str(
        oldest_first.compile(dialect=postgresql.dialect())
    )


def test_cut_hands_out_a_cursor_only_when_a_row_is_left():
    rows = [row() for _ in range(3)]
    assert KEYSET.cut(rows, 3) == (rows, None)
    page, cursor = KEYSET.cut(rows, 2)
    assert page == rows[:2] and cursor is not None and KEYSET.decode(cursor)[1] == rows[1].id
    assert KEYSET.cut([], 2) == ([], None)
