"""State machines are tables: one declared :class:`Machine` per status column, one function that moves a row.

A machine names the mapped model whose status column it guards, its states (a ``StrEnum``) and the allowed moves.
:func:`transition` (and :func:`transition_all`, its bulk form) is the only writer of such a column: a compare-and-set
``UPDATE … SET status = :to WHERE <primary key> AND status = :expected RETURNING *``, so two workers can never both
advance the same row. In the same transaction it records the move in the machine's history table (when it has
one) and runs its ``on_change`` hook (an outbox event, a NOTIFY, a metric), so either everything happens or nothing
does. A move the table does not allow, or one that lost the race, raises the machine's :class:`Conflict` subclass
(409) and changes nothing. ``tests/foundation/test_status_writes.py`` fails if any other code writes a status column.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, insert, inspect, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_platform.errors import Conflict, NotFound


class IllegalTransition(Conflict):
    type, title = "illegal-transition", "Illegal state transition"


@dataclass(frozen=True)
class Change:
    """One applied move, as the ``on_change`` hook sees it (``row`` is already in its new state)."""

    row: Any
    from_status: str | None
    to_status: str
    actor: str
    reason: str | None
    extra: dict[str, Any] = field(default_factory=dict)  # the history row's other columns (e.g. failed_stage)


@dataclass(frozen=True, eq=False)
class Machine:
    """A status column and its rules. ``history`` (a mapped class with ``history_key``, from_status, to_status,
    actor, reason) is optional: say in the machine's docstring why a column has none."""

    noun: str  # "order", "snapshot job": error messages read "An order in X cannot move to Y."
    model: type
    transitions: Mapping[Any, frozenset[Any]]
    history: type | None = None
    history_key: str = ""  # the history table's column holding the row's id
    on_change: Callable[[AsyncSession, Change], Awaitable[None]] | None = None
    conflict: type[Conflict] = IllegalTransition
    id_field: str = "id"  # the problem document's member naming the row (order_id, job_id, …)
    column: str = "status"
    reason_column: str | None = None  # a column of the row that keeps the last move's reason, if any

    def allowed(self, from_status: Any, to_status: Any) -> bool:
        return to_status in self.transitions.get(from_status, frozenset())

    def _key(self, ident: Any) -> ColumnElement[bool]:
        pk = inspect(self.model).primary_key
        values = ident if isinstance(ident, tuple) else (ident,)
        return and_(*(c == v for c, v in zip(pk, values, strict=True)))

    def _named(self, ident: Any) -> dict[str, str]:
        return {self.id_field: "/".join(map(str, ident)) if isinstance(ident, tuple) else str(ident)}


def _value(status: Any) -> Any:
    return status.value if isinstance(status, enum.Enum) else status


async def current(session: AsyncSession, machine: Machine, ident: Any) -> str:
    """The row's status now; NotFound (404) when there is no such row."""
    col = getattr(machine.model, machine.column)
    found = (await session.execute(select(col).where(machine._key(ident)))).scalar_one_or_none()
    if found is None:
        raise NotFound(f"No {machine.noun} with that id.", **machine._named(ident))
    return found


async def transition(
    session: AsyncSession,
    machine: Machine,
    ident: Any,
    expected: Any | None,
    to: Any,
    *,
    actor: str,
    reason: str | None = None,
    where: tuple[ColumnElement[bool], ...] = (),
    history: dict[str, Any] | None = None,
    **values: Any,
) -> Any:
    """Move row ``ident`` (its primary key; a tuple for a composite one) from ``expected`` (None: whatever it is
    now) to ``to``, setting ``values`` in the same UPDATE, only while ``where`` also holds (e.g. a lease). Returns
    the updated row (the session's object, refreshed). ``history`` are the history row's other columns."""
    if machine.column in values:
        raise ValueError(f"{machine.column} is set by transition() itself")
    if machine.reason_column is not None:
        values[machine.reason_column] = reason
    if expected is None:
        expected = await current(session, machine, ident)
    if machine.allowed(expected, to):
        await session.flush()  # the caller's pending changes first: RETURNING below overwrites the session's object
        col = getattr(machine.model, machine.column)
        stmt = (
            update(machine.model)
            .where(machine._key(ident), col == _value(expected), *where)
            .values({machine.column: _value(to), **values})
            .returning(machine.model)
            # RETURNING refreshes the caller's object; no expiry of SQL-expression attributes (no lazy IO after)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        row = (await session.execute(stmt)).scalar_one_or_none()
        if row is not None:
            await _applied(session, machine, row, ident, _value(expected), _value(to), actor, reason, history or {})
            return row
    raise await _refusal(session, machine, ident, expected, to)


async def transition_all(
    session: AsyncSession,
    machine: Machine,
    to: Any,
    *,
    where: tuple[ColumnElement[bool], ...],
    actor: str,
    reason: str | None = None,
    **values: Any,
) -> list[Any]:
    """:func:`transition` of every row that ``where`` selects and whose status may move to ``to``, in one UPDATE
    of the rows it locks in their current status (so a row another worker moves meanwhile is left alone); each
    move is recorded as :func:`transition` records one. Returns the moved rows."""
    if machine.column in values:
        raise ValueError(f"{machine.column} is set by transition_all() itself")
    if machine.reason_column is not None:
        values[machine.reason_column] = reason
    await session.flush()
    col = getattr(machine.model, machine.column)
    pk = inspect(machine.model).primary_key
    froms = [_value(s) for s, targets in machine.transitions.items() if to in targets]
    old = select(*pk, col.label("from_status")).where(col.in_(froms), *where).with_for_update().subquery()
    stmt = (
        update(machine.model)
        .where(*(c == old.c[c.name] for c in pk))
        .values({machine.column: _value(to), **values})
        .returning(machine.model, old.c.from_status)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    moved = []
    for row, from_status in (await session.execute(stmt)).all():
        await _applied(session, machine, row, _ident(row), from_status, _value(to), actor, reason, {})
        moved.append(row)
    return moved


async def move(session: AsyncSession, machine: Machine, row: Any, to: Any, **kwargs: Any) -> Any:
    """:func:`transition` of a row the caller holds (usually locked): from the status it was read in."""
    return await transition(session, machine, _ident(row), getattr(row, machine.column), to, **kwargs)


def _ident(row: Any) -> Any:
    ident = inspect(row).identity
    return ident[0] if len(ident) == 1 else ident


async def try_transition(
    session: AsyncSession, machine: Machine, ident: Any, expected: Any | None, to: Any, **kwargs: Any
) -> Any | None:
    """:func:`transition`, but None instead of the machine's conflict or NotFound: for callers to whom "someone
    else moved it already" or "no such row" is an answer, not an error."""
    try:
        return await transition(session, machine, ident, expected, to, **kwargs)
    except (machine.conflict, NotFound):
        return None


async def created(
    session: AsyncSession, machine: Machine, row: Any, *, actor: str, reason: str | None = None, **history: Any
) -> None:
    """Record a row just inserted in its first state (history row from None, ``on_change``)."""
    status = _value(getattr(row, machine.column))
    await _applied(session, machine, row, _ident(row), None, status, actor, reason, history)


async def _applied(
    session: AsyncSession,
    machine: Machine,
    row: Any,
    ident: Any,
    from_status: str | None,
    to_status: str,
    actor: str,
    reason: str | None,
    extra: dict[str, Any],
) -> None:
    if machine.history is not None:
        await session.execute(
            insert(machine.history).values(
                {
                    machine.history_key: ident,
                    "from_status": from_status,
                    "to_status": to_status,
                    "actor": actor,
                    "reason": reason,
                    **extra,
                }
            )
        )
    if machine.on_change is not None:
        await machine.on_change(session, Change(row, from_status, to_status, actor, reason, extra))


async def _refusal(session: AsyncSession, machine: Machine, ident: Any, expected: Any, to: Any) -> Conflict:
    now = await current(session, machine, ident)
    named = machine._named(ident)
    if now == _value(expected) and machine.allowed(now, to):  # only ``where`` failed (another worker's lease)
        return machine.conflict(
            f"The {machine.noun} changed concurrently; it is no longer in {_value(expected)} as expected.",
            **named,
            requested_status=str(_value(to)),
        )
    noun = f"{'An' if machine.noun[0] in 'aeiou' else 'A'} {machine.noun}"
    return machine.conflict(
        f"{noun} in {now} cannot move to {_value(to)}.",
        **named,
        current_status=str(now),
        requested_status=str(_value(to)),
        allowed=sorted(map(str, map(_value, machine.transitions.get(now, ())))),
    )
