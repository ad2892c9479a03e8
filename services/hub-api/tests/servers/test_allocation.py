"""The allocation worker: pool first (no double booking), then Hetzner overflow (AUTO) or a hold (MANUAL)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from hub_testing.servers import add_servers, order_spec, servers_settings, staged
from letsbe_contracts import FailureStage, OrderFailedV1, Provider, ServerAllocatedV1, load_catalog
from letsbe_fakes.hetzner import SERVER_TYPES
from letsbe_hub.db import inbox
from letsbe_hub.providers.errors import ProviderUnavailable
from letsbe_hub.providers.factory import build_hetzner, hetzner_config
from letsbe_hub.providers.hetzner import HetznerProvider
from letsbe_hub.servers.allocation import CONSUMER, Allocator, Outcome, overflow_name
from letsbe_hub.servers.models import AllocationHold, InventoryStatus, OverflowServer, OverflowStatus, Server


async def _servers(sessions) -> list[Server]:
    async with sessions() as s:
        return list((await s.execute(select(Server).order_by(Server.created_at))).scalars())


async def _intent(sessions, order_id) -> OverflowServer | None:
    async with sessions() as s:
        return await s.get(OverflowServer, order_id)


async def test_a_pool_server_is_reserved_with_the_claim_and_server_allocated_in_one_go(sessions, allocator):
    [pool] = await add_servers(sessions, 1)
    order = order_spec()
    event_id = uuid.uuid4()

    assert await allocator.allocate(order, event_id) is Outcome.POOL

    [server] = await _servers(sessions)
    assert server.id == pool.id and server.status == InventoryStatus.RESERVED
    assert server.order_id == order.order_id == server.tenant_id
    [(env, event)] = await staged(sessions, ServerAllocatedV1)
    assert env.correlation_id == str(order.order_id)
    assert event.order == order
    assert event.server.server_id == pool.id and event.server.provider is Provider.NETCUP
    assert event.server.host_key_fingerprint == pool.host_key_fingerprint
    async with sessions() as s:
        claimed = await s.execute(select(inbox).where(inbox.c.consumer == CONSUMER, inbox.c.event_id == event_id))
        assert claimed.first() is not None


async def test_a_redelivered_order_created_allocates_nothing_more(sessions, allocator, fake_hetzner):
    await add_servers(sessions, 2)
    order, event_id = order_spec(), uuid.uuid4()
    assert await allocator.allocate(order, event_id) is Outcome.POOL
    assert await allocator.allocate(order, event_id) is Outcome.DUPLICATE
    assert len(await staged(sessions, ServerAllocatedV1)) == 1
    assert [s.status for s in await _servers(sessions)].count(InventoryStatus.AVAILABLE) == 1


async def test_concurrent_allocators_never_hand_one_server_to_two_orders(sessions, allocator):
    await add_servers(sessions, 20)
    orders = [order_spec(mode="MANUAL") for _ in range(60)]
    outcomes = await asyncio.gather(*(allocator.allocate(o, uuid.uuid4()) for o in orders))

    assert Counter(outcomes) == {Outcome.POOL: 20, Outcome.HELD: 40}
    events = [e for _, e in await staged(sessions, ServerAllocatedV1)]
    assert len({e.server.server_id for e in events}) == len(events) == 20
    assert len({e.order.order_id for e in events}) == 20
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(AllocationHold)) == 40


async def test_the_pool_is_per_tier_and_region(sessions, allocator):
    await add_servers(sessions, 1, tier="build", region="us")
    await add_servers(sessions, 1, tier="scale", region="eu")
    assert await allocator.allocate(order_spec("build", "eu", "MANUAL"), uuid.uuid4()) is Outcome.HELD
    assert await allocator.allocate(order_spec("build", "us", "MANUAL"), uuid.uuid4()) is Outcome.POOL


async def test_an_auto_order_meeting_an_empty_pool_gets_a_hetzner_server_with_its_real_host_key(
    sessions, allocator, fake_hetzner, ssh_target
):
    fake, _ = fake_hetzner
    order = order_spec("scale", "us")
    assert await allocator.allocate(order, uuid.uuid4()) is Outcome.OVERFLOW

    assert fake.creates == 1
    body = fake.create_requests[0]
    # nextcloud needs 2 CPUs, 2304 MB, 40 GB: Ashburn sells no cx22 and a cpx11 has 2 GB, so the cheapest is a cpx21.
    assert body["server_type"] == "cpx21" and body["location"] == "ash"
    assert body["name"] == overflow_name(order.order_id, 1)
    assert body["labels"]["letsbe-order"] == str(order.order_id)
    assert 'name: "letsbe"' in body["user_data"]
    [server] = await _servers(sessions)
    assert (server.provider, server.status, server.order_id) == ("hetzner", "RESERVED", order.order_id)
    assert server.provider_ref == str(next(iter(fake.servers)))
    [(_, event)] = await staged(sessions, ServerAllocatedV1)
    assert event.server.host_key_fingerprint == ssh_target.fingerprint
    assert (str(event.server.ipv4), event.server.ssh_port) == ("127.0.0.1", ssh_target.port)
    assert (await _intent(sessions, order.order_id)).status == OverflowStatus.READY


async def test_without_hetzner_credentials_an_auto_order_fails_retryably(sessions, database_url):
    allocator = Allocator(sessions, servers_settings(database_url), None)
    order = order_spec()
    assert await allocator.allocate(order, uuid.uuid4()) is Outcome.FAILED
    [(_, failed)] = await staged(sessions, OrderFailedV1)
    assert failed.stage is FailureStage.ALLOCATION and failed.retryable
    assert "not configured" in failed.reason


class CrashOnce(HetznerProvider):
    """Hetzner creates the server, then our process 'dies' before recording anything more."""

    crashed = False

    async def allocate_server(self, *args, **kwargs):
        result = await super().allocate_server(*args, **kwargs)
        if not self.crashed:
            self.crashed = True
            raise RuntimeError("worker killed")
        return result


async def test_a_crash_after_the_create_resumes_with_the_same_server(sessions, settings, fake_hetzner):
    fake, _ = fake_hetzner
    async with CrashOnce(hetzner_config(settings)) as crashy:
        allocator = Allocator(sessions, settings, crashy)
        order, event_id = order_spec(), uuid.uuid4()
        with pytest.raises(RuntimeError):
            await allocator.allocate(order, event_id)
        await add_servers(sessions, 1)  # a pool server turning up meanwhile must not orphan the Hetzner one
        assert await allocator.allocate(order, event_id) is Outcome.OVERFLOW  # the redelivery

    assert fake.creates == 1
    [(_, event)] = await staged(sessions, ServerAllocatedV1)
    assert event.server.provider is Provider.HETZNER
    assert [s.status for s in await _servers(sessions) if s.provider == "netcup"] == ["AVAILABLE"]


async def test_a_hetzner_failure_mid_creation_deletes_the_server_and_fails_the_order_retryably(
    sessions, allocator, fake_hetzner
):
    fake, _ = fake_hetzner
    fake.fail_create_actions = True
    order = order_spec()
    assert await allocator.allocate(order, uuid.uuid4()) is Outcome.FAILED

    assert fake.creates == 1 and fake.servers == {} and len(fake.deleted) == 1, "no orphaned server"
    [(env, failed)] = await staged(sessions, OrderFailedV1)
    assert (failed.order_id, failed.stage, failed.retryable) == (order.order_id, FailureStage.ALLOCATION, True)
    assert "Action failed" in failed.reason and env.correlation_id == str(order.order_id)
    assert await _servers(sessions) == []
    assert (await _intent(sessions, order.order_id)).status == OverflowStatus.FAILED

    # The orders context retries the FAILED order: a new order-created, a new attempt, a new server.
    fake.fail_create_actions = False
    assert await allocator.allocate(order, uuid.uuid4()) is Outcome.OVERFLOW
    assert fake.creates == 2 and len(fake.servers) == 1
    assert next(iter(fake.servers.values()))["name"] == overflow_name(order.order_id, 2)
    [(_, allocated)] = await staged(sessions, ServerAllocatedV1)
    assert allocated.order.order_id == order.order_id


async def test_a_server_whose_ssh_never_answers_is_deleted_and_the_order_failed(
    sessions, database_url, fake_hetzner, ssh_target
):
    fake, url = fake_hetzner
    settings = servers_settings(
        database_url,
        hetzner_api_url=url,
        hetzner_api_token="hetzner-test-token",
        server_ssh_port=1,
        ssh_ready_timeout_seconds=0.3,
    )
    async with build_hetzner(settings) as hetzner:
        outcome = await Allocator(sessions, settings, hetzner).allocate(order_spec(), uuid.uuid4())
    assert outcome is Outcome.FAILED
    assert fake.servers == {} and len(fake.deleted) == 1
    [(_, failed)] = await staged(sessions, OrderFailedV1)
    assert "SSH on 127.0.0.1:1 not reachable" in failed.reason


async def test_a_failing_delete_is_retried_on_redelivery_before_the_order_fails(sessions, allocator, fake_hetzner):
    fake, _ = fake_hetzner
    fake.fail_create_actions = True
    fake.inject("DELETE", r"/v1/servers/\d+", 500, times=100)
    order, event_id = order_spec(), uuid.uuid4()
    with pytest.raises(ProviderUnavailable):
        await allocator.allocate(order, event_id)
    assert len(fake.servers) == 1 and await staged(sessions, OrderFailedV1) == []
    assert (await _intent(sessions, order.order_id)).status == OverflowStatus.FAILING

    fake.clear_injections()
    assert await allocator.allocate(order, event_id) is Outcome.FAILED  # JetStream redelivers
    assert fake.servers == {} and fake.creates == 1
    assert len(await staged(sessions, OrderFailedV1)) == 1


async def test_an_order_that_holds_a_server_is_given_the_same_server_again(sessions, allocator):
    await add_servers(sessions, 3)
    order = order_spec()
    assert await allocator.allocate(order, uuid.uuid4()) is Outcome.POOL
    assert await allocator.allocate(order, uuid.uuid4()) is Outcome.EXISTING
    first, second = [e for _, e in await staged(sessions, ServerAllocatedV1)]
    assert first.server == second.server
    assert [s.status for s in await _servers(sessions)].count(InventoryStatus.RESERVED) == 1


async def test_a_stuck_overflow_attempt_is_cleaned_up_by_the_sweep(sessions, settings, fake_hetzner):
    fake, _ = fake_hetzner
    async with CrashOnce(hetzner_config(settings)) as crashy:
        allocator = Allocator(sessions, settings, crashy)
        order = order_spec()
        with pytest.raises(RuntimeError):
            await allocator.allocate(order, uuid.uuid4())  # and the event is then dead-lettered
        assert await allocator.sweep_stale(datetime.now(UTC)) == 0, "not stale yet"
        assert await allocator.sweep_stale(datetime.now(UTC) + timedelta(hours=2)) == 1
    assert fake.servers == {} and fake.creates == 1
    assert (await _intent(sessions, order.order_id)).status == OverflowStatus.FAILED
    [(_, failed)] = await staged(sessions, OrderFailedV1)
    assert failed.order_id == order.order_id and failed.retryable


class SweptMeanwhile(HetznerProvider):
    """The sweep takes the attempt for stuck and cleans it up just before Hetzner creates its server: it finds no
    server by the name yet, marks the attempt FAILED and fails the order; then the create goes through."""

    allocator: Allocator

    async def allocate_server(self, *args, **kwargs):
        assert await self.allocator.sweep_stale(datetime.now(UTC) + timedelta(hours=2)) == 1
        return await super().allocate_server(*args, **kwargs)


async def test_a_server_created_for_an_attempt_the_sweep_cleaned_up_meanwhile_is_deleted(
    sessions, settings, fake_hetzner, ssh_target
):
    fake, _ = fake_hetzner
    async with SweptMeanwhile(hetzner_config(settings)) as racing:
        allocator = racing.allocator = Allocator(sessions, settings, racing)
        order, event_id = order_spec(), uuid.uuid4()
        assert await allocator.allocate(order, event_id) is Outcome.DUPLICATE
        assert await allocator.allocate(order, event_id) is Outcome.DUPLICATE  # a redelivery starts no attempt 2
    assert fake.creates == 1 and fake.servers == {}, "the server no attempt owns would run, and cost, forever"
    assert (await _intent(sessions, order.order_id)).status == OverflowStatus.FAILED
    assert await _servers(sessions) == [] and await staged(sessions, ServerAllocatedV1) == []
    [(_, failed)] = await staged(sessions, OrderFailedV1)
    assert failed.retryable  # a retry starts attempt 2 with a server of its own


async def test_a_late_delivery_never_deletes_a_server_of_its_attempt_that_is_in_the_inventory(
    sessions, allocator, fake_hetzner, ssh_target
):
    """Another delivery finished the attempt with the very server this one made (one name, one server), and by the
    time this one looks the order has moved on to a new attempt: the server is in the inventory, so it stays."""
    fake, _ = fake_hetzner
    order = order_spec()
    assert await allocator.allocate(order, uuid.uuid4()) is Outcome.OVERFLOW
    async with sessions() as s, s.begin():
        intent = await s.get(OverflowServer, order.order_id)
        intent.name, intent.attempt = overflow_name(order.order_id, 2), 2
    assert await allocator._lost(order.order_id, overflow_name(order.order_id, 1)) is Outcome.DUPLICATE
    assert len(fake.servers) == 1 and fake.deleted == []


@pytest.mark.parametrize(
    ("region", "tools", "expected"),
    [
        ("eu", ("nextcloud",), "cx22"),  # 2 CPUs, 2304 MB, 40 GB: the smallest Intel type
        # every tool: 7936 MB and 118 GB; cx32 has the RAM but 80 GB disk, cx42 costs more than cpx31
        ("eu", tuple(t.name for t in load_catalog().selectable), "cpx31"),
        ("us", tuple(t.name for t in load_catalog().selectable), "cpx31"),
    ],
)
async def test_overflow_orders_the_cheapest_hetzner_type_that_holds_the_tools(
    sessions, allocator, fake_hetzner, ssh_target, region, tools, expected
):
    """Every tier's catalog type (cpx21…cpx51) is smaller than the tier's nominal CPU/RAM/disk, so preflight failed
    every overflow order; the type is now chosen by what the tools need, which is what preflight checks."""
    fake, _ = fake_hetzner
    order = order_spec("enterprise", region, tools=tools)
    assert await allocator.allocate(order, uuid.uuid4()) is Outcome.OVERFLOW
    server_type = SERVER_TYPES[fake.create_requests[0]["server_type"]]
    needs = load_catalog().needs(tools)
    assert server_type["name"] == expected
    assert server_type["cores"] >= needs.cpus and server_type["memory"] * 1024 >= needs.ram_mb
    assert server_type["disk"] >= needs.disk_gb


async def test_no_candidate_type_big_enough_fails_the_order_for_good_without_creating_a_server(
    sessions, database_url, fake_hetzner
):
    fake, url = fake_hetzner
    settings = servers_settings(
        database_url, hetzner_api_url=url, hetzner_api_token="hetzner-test-token", hetzner_server_types=["cx22"]
    )
    order = order_spec("enterprise", tools=tuple(t.name for t in load_catalog().selectable))
    async with build_hetzner(settings) as hetzner:
        assert await Allocator(sessions, settings, hetzner).allocate(order, uuid.uuid4()) is Outcome.FAILED
    assert fake.creates == 0
    [(_, failed)] = await staged(sessions, OrderFailedV1)
    assert not failed.retryable
    assert "no server type of cx22 in nbg1 has 2 CPUs, 7936 MB RAM and 118 GB disk" in failed.reason
