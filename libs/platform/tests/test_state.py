"""The state-machine primitive against real Postgres: the table decides, a lost race changes nothing, history and
the change hook happen with the move and only then. The sample tables belong to these tests alone (created here, in
the test's own database), not to any service's migrations."""

import asyncio
import enum
import uuid

import pytest
from sqlalchemy import BigInteger, Identity, String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from letsbe_platform import state
from letsbe_platform.db import unit_of_work
from letsbe_platform.errors import Conflict, NotFound


class Base(DeclarativeBase):
    pass


class Door(Base):
    __tablename__ = "doors"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(20))
    owner: Mapped[str | None] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(String(200))


class Hinge(Base):  # a composite primary key
    __tablename__ = "hinges"
    door_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    number: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(20))


class DoorHistory(Base):
    __tablename__ = "door_history"
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    door_id: Mapped[uuid.UUID] = mapped_column()
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(String(200))


class S(enum.StrEnum):
    CLOSED, OPEN, LOCKED = "CLOSED", "OPEN", "LOCKED"


class DoorConflict(state.IllegalTransition):
    type = "door-conflict"


TABLE = {S.CLOSED: frozenset({S.OPEN, S.LOCKED}), S.OPEN: frozenset({S.CLOSED}), S.LOCKED: frozenset({S.CLOSED})}
changes: list[state.Change] = []


async def remember(session, change: state.Change) -> None:
    changes.append(change)


DOOR = state.Machine(
    noun="door",
    model=Door,
    transitions=TABLE,
    history=DoorHistory,
    history_key="door_id",
    on_change=remember,
    conflict=DoorConflict,
    id_field="door_id",
    reason_column="note",
)
HINGE = state.Machine(noun="hinge", model=Hinge, transitions=TABLE)


@pytest.fixture
async def doors(sessions):
    async with sessions() as s:
        await s.run_sync(lambda sync: Base.metadata.create_all(sync.connection()))
        await s.commit()
    changes.clear()
    return sessions


async def new_door(sessions, status=S.CLOSED) -> uuid.UUID:
    async with unit_of_work(sessions) as s:
        door = Door(id=uuid.uuid4(), status=status)
        s.add(door)
        await s.flush()
        await state.created(s, DOOR, door, actor="maker")
    return door.id


async def history(sessions, door_id) -> list[tuple]:
    async with sessions() as s:
        rows = await s.execute(select(DoorHistory).where(DoorHistory.door_id == door_id).order_by(DoorHistory.id))
        return [(h.from_status, h.to_status, h.actor, h.reason) for h in rows.scalars()]


async def test_a_legal_move_updates_the_row_records_history_and_runs_the_hook_in_one_transaction(doors):
    door_id = await new_door(doors)
    async with unit_of_work(doors) as s:
        door = await s.get(Door, door_id)
        door.owner = "ann"  # pending in the session: written before the compare-and-set, not lost by it
        moved = await state.transition(s, DOOR, door_id, S.CLOSED, S.OPEN, actor="ann", reason="hello")
        assert moved is door and (door.status, door.owner, door.note) == (S.OPEN, "ann", "hello")
    assert await history(doors, door_id) == [(None, "CLOSED", "maker", None), ("CLOSED", "OPEN", "ann", "hello")]
    assert [(c.from_status, c.to_status, c.row.id) for c in changes] == [
        (None, "CLOSED", door_id),
        ("CLOSED", "OPEN", door_id),
    ]


@pytest.mark.parametrize(("expected", "to"), [(S.CLOSED, S.CLOSED), (None, S.CLOSED), (S.OPEN, S.CLOSED)])
async def test_a_move_the_table_refuses_or_from_a_stale_state_changes_nothing(doors, expected, to):
    door_id = await new_door(doors)
    with pytest.raises(DoorConflict) as refused:
        async with unit_of_work(doors) as s:
            await state.transition(s, DOOR, door_id, expected, to, actor="bob")
    assert refused.value.status_code == 409
    assert refused.value.extra == {
        "door_id": str(door_id),
        "current_status": "CLOSED",
        "requested_status": "CLOSED",
        "allowed": ["LOCKED", "OPEN"],
    }
    assert await history(doors, door_id) == [(None, "CLOSED", "maker", None)]
    assert len(changes) == 1


async def test_two_movers_from_the_same_state_cannot_both_win(doors):
    door_id = await new_door(doors)

    async def move(to: S) -> bool:
        try:
            async with unit_of_work(doors) as s:
                await state.transition(s, DOOR, door_id, S.CLOSED, to, actor=to)
            return True
        except Conflict:
            return False

    assert sorted(await asyncio.gather(move(S.OPEN), move(S.LOCKED))) == [False, True]
    assert len(await history(doors, door_id)) == 2


async def test_an_extra_condition_that_no_longer_holds_refuses_the_move(doors):
    door_id = await new_door(doors)
    async with unit_of_work(doors) as s:
        with pytest.raises(DoorConflict, match="changed concurrently"):
            await state.transition(s, DOOR, door_id, S.CLOSED, S.OPEN, actor="x", where=(Door.owner == "me",))
        assert (
            await state.try_transition(s, DOOR, door_id, S.CLOSED, S.OPEN, actor="x", where=(Door.owner == "me",))
            is None
        )
        assert (await s.execute(select(Door.status).where(Door.id == door_id))).scalar_one() == S.CLOSED


async def test_no_such_row_is_not_found_and_the_status_is_set_only_by_the_move(doors):
    async with unit_of_work(doors) as s:
        with pytest.raises(NotFound):
            await state.transition(s, DOOR, uuid.uuid4(), None, S.OPEN, actor="x")
        assert await state.try_transition(s, DOOR, uuid.uuid4(), S.CLOSED, S.OPEN, actor="x") is None
        with pytest.raises(ValueError, match="status is set by transition"):
            await state.transition(s, DOOR, uuid.uuid4(), S.CLOSED, S.OPEN, actor="x", status=S.LOCKED)


async def test_a_composite_key_and_no_history(doors):
    door_id = uuid.uuid4()
    async with unit_of_work(doors) as s:
        s.add_all([Hinge(door_id=door_id, number=n, status=S.CLOSED) for n in (1, 2)])
    async with unit_of_work(doors) as s:
        await state.transition(s, HINGE, (door_id, 2), S.CLOSED, S.LOCKED, actor="x")
        rows = await s.execute(
            select(Hinge.number, Hinge.status).where(Hinge.door_id == door_id).order_by(Hinge.number)
        )
        assert rows.all() == [(1, "CLOSED"), (2, "LOCKED")]
        assert (await s.execute(select(func.count()).select_from(DoorHistory))).scalar_one() == 0


async def test_a_bulk_move_takes_only_the_selected_rows_that_may_move_and_records_each(doors):
    opened, locked, closed, elsewhere = [
        await new_door(doors, status) for status in (S.OPEN, S.LOCKED, S.CLOSED, S.OPEN)
    ]
    async with unit_of_work(doors) as s:
        where = (Door.id.in_([opened, locked, closed]),)
        moved = await state.transition_all(s, DOOR, S.CLOSED, where=where, actor="night", reason="closing time")
        assert sorted(d.id for d in moved) == sorted([opened, locked])
        assert {d.status for d in moved} == {S.CLOSED} and {d.note for d in moved} == {"closing time"}
    assert (await history(doors, opened))[-1] == ("OPEN", "CLOSED", "night", "closing time")
    assert (await history(doors, locked))[-1] == ("LOCKED", "CLOSED", "night", "closing time")
    assert len(await history(doors, closed)) == 1  # CLOSED → CLOSED is no move: left alone
    async with doors() as s:
        assert (await s.get(Door, elsewhere)).status == S.OPEN  # not selected
    door_id = uuid.uuid4()
    async with unit_of_work(doors) as s:
        s.add_all([Hinge(door_id=door_id, number=n, status=S.CLOSED) for n in (1, 2)])
    async with unit_of_work(doors) as s:
        hinges = await state.transition_all(s, HINGE, S.LOCKED, where=(Hinge.door_id == door_id,), actor="x")
        assert sorted((h.number, h.status) for h in hinges) == [(1, "LOCKED"), (2, "LOCKED")]
