"""The order state machine: the table decides, illegal moves change nothing, concurrent moves cannot both win."""

import asyncio
import itertools

import pytest
from sqlalchemy import select, text

from hub_testing.orders import count, insert_order
from letsbe_contracts.enums import FailureStage, OrderStatus
from letsbe_hub.orders import state
from letsbe_hub.orders.models import Order, OrderTransition
from letsbe_hub.orders.state import TRANSITIONS, IllegalTransition, transition
from letsbe_platform.db import unit_of_work

ALL_PAIRS = list(itertools.product(OrderStatus, OrderStatus))


def test_the_table_is_the_documented_machine():
    active = [s for s in state.HAPPY_PATH if s is not OrderStatus.FULFILLED]
    for here, nxt in itertools.pairwise(state.HAPPY_PATH):
        assert TRANSITIONS[here] == {nxt, OrderStatus.FAILED, OrderStatus.CANCELLED}
    assert set(active) == set(state.ACTIVE)
    assert TRANSITIONS[OrderStatus.FAILED] == {
        OrderStatus.PENDING_PAYMENT,
        OrderStatus.AWAITING_SERVER,
        OrderStatus.DNS_PENDING,
        OrderStatus.PROVISIONING,
        OrderStatus.CANCELLED,
    }
    assert TRANSITIONS[OrderStatus.FULFILLED] == frozenset() == TRANSITIONS[OrderStatus.CANCELLED]


async def test_every_pair_of_states_is_allowed_or_refused_exactly_as_the_table_says(sessions):
    orders = {}
    for src in OrderStatus:
        for dst in OrderStatus:
            orders[src, dst] = await insert_order(sessions, status=src)
    for src, dst in ALL_PAIRS:
        oid = orders[src, dst]
        stage = FailureStage.DNS if dst is OrderStatus.FAILED else None
        before = await count(sessions, "SELECT count(*) FROM hub.outbox")
        try:
            async with unit_of_work(sessions) as session:
                await transition(session, oid, dst, actor="test", reason="why", stage=stage)
        except IllegalTransition as exc:
            assert dst not in TRANSITIONS[src], f"{src} → {dst} refused but the table allows it"
            assert exc.status_code == 409 and exc.extra["current_status"] == src
            async with sessions() as session:
                assert (await session.get(Order, oid)).status == src
            assert await count(sessions, "SELECT count(*) FROM hub.order_transitions WHERE order_id = :o", o=oid) == 0
            assert await count(sessions, "SELECT count(*) FROM hub.outbox") == before
            continue
        assert dst in TRANSITIONS[src], f"{src} → {dst} applied but the table forbids it"
        async with sessions() as session:
            order = await session.get(Order, oid)
            assert order.status == dst
            assert order.failed_stage == (stage.value if stage else None)
            history = (await session.execute(select(OrderTransition).where(OrderTransition.order_id == oid))).scalars()
            [row] = list(history)
            assert (row.from_status, row.to_status, row.actor, row.reason) == (src, dst, "test", "why")
            envelope = (
                await session.execute(
                    text(
                        "SELECT envelope FROM hub.outbox WHERE subject = 'letsbe.order.status.changed.v1' "
                        "AND envelope->'payload'->>'order_id' = :o"
                    ),
                    {"o": str(oid)},
                )
            ).scalar_one()
            assert envelope["payload"]["from_status"] == src and envelope["payload"]["to_status"] == dst
            assert envelope["correlation_id"] == str(oid)


async def test_two_workers_moving_an_order_from_the_same_state_cannot_both_win(sessions):
    oid = await insert_order(sessions, status=OrderStatus.AWAITING_SERVER)

    async def attempt(to: OrderStatus, **kw) -> bool:
        try:
            async with unit_of_work(sessions) as session:
                await transition(session, oid, to, actor="racer", expected=OrderStatus.AWAITING_SERVER, **kw)
                await asyncio.sleep(0.05)  # hold the transaction open so the other one has to wait or lose
            return True
        except IllegalTransition:
            return False

    results = await asyncio.gather(
        attempt(OrderStatus.SERVER_READY),
        attempt(OrderStatus.FAILED, stage=FailureStage.ALLOCATION, reason="boom"),
        attempt(OrderStatus.CANCELLED),
    )
    assert results.count(True) == 1
    assert await count(sessions, "SELECT count(*) FROM hub.order_transitions WHERE order_id = :o", o=oid) == 1


async def test_moving_to_failed_requires_a_stage_and_leaving_failed_clears_it(sessions):
    oid = await insert_order(sessions, status=OrderStatus.DNS_PENDING)
    async with unit_of_work(sessions) as session:
        with pytest.raises(ValueError, match="stage"):
            await transition(session, oid, OrderStatus.FAILED, actor="t")
    async with unit_of_work(sessions) as session:
        order = await transition(
            session, oid, OrderStatus.FAILED, actor="t", reason="cloudflare 500", stage=FailureStage.DNS, retryable=True
        )
        assert (order.failed_stage, order.failure_reason, order.failure_retryable) == ("DNS", "cloudflare 500", True)
    async with unit_of_work(sessions) as session:
        order = await transition(session, oid, OrderStatus.DNS_PENDING, actor="t", reason="retry")
        assert (order.failed_stage, order.failure_reason, order.failure_retryable) == (None, None, None)
