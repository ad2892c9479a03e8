"""The Hetzner client against the loopback fake of the Hetzner Cloud API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from ipaddress import IPv4Address, IPv6Address

import pytest
import pytest_asyncio

from letsbe_contracts import Provider, Region, Tier
from letsbe_fakes import LoopbackServer
from letsbe_fakes.hetzner import FakeHetzner
from letsbe_hub.providers import (
    ProviderActionFailed,
    ProviderAuthError,
    ProviderRejected,
    ProviderUnavailable,
    ServerAllocator,
    ServerProvider,
    ServerState,
)
from letsbe_hub.providers.hetzner import HetznerConfig, HetznerProvider
from letsbe_hub.providers.http import RetryPolicy

FAST = RetryPolicy(attempts=3, backoff_base=0.01, backoff_max=0.05)


@pytest.fixture
def fake() -> Iterator[tuple[FakeHetzner, str]]:
    f = FakeHetzner(action_polls=2)
    with LoopbackServer(f.app) as srv:
        yield f, srv.url + "/v1"


def _config(url: str, **overrides: object) -> HetznerConfig:
    base: dict[str, object] = {
        "api_url": url,
        "token": "hetzner-test-token",
        "ssh_keys": ("letsbe-ops",),
        "user_data": "#cloud-config\n",
        "retry": FAST,
        "poll_interval": 0.01,
        "action_timeout": 5.0,
    }
    base.update(overrides)
    return HetznerConfig(**base)  # type: ignore[arg-type]


@pytest_asyncio.fixture
async def hetzner(fake: tuple[FakeHetzner, str]) -> AsyncIterator[HetznerProvider]:
    async with HetznerProvider(_config(fake[1])) as p:
        yield p


async def test_allocate_creates_the_catalog_type_in_the_region_and_returns_a_running_server(fake, hetzner):
    f, _ = fake
    alloc = await hetzner.allocate_server(Tier.BUILD, Region.US, key="letsbe-order-1", labels={"letsbe-order": "1"})

    assert isinstance(hetzner, ServerProvider) and isinstance(hetzner, ServerAllocator)
    assert alloc.provider is Provider.HETZNER
    assert alloc.ipv4 == IPv4Address("127.0.0.1")
    assert isinstance(alloc.ipv6, IPv6Address) and str(alloc.ipv6).endswith("::1")
    assert f.creates == 1
    body = f.create_requests[0]
    assert body["server_type"] == "cpx31" and body["location"] == "ash" and body["image"] == "debian-12"
    assert body["ssh_keys"] == ["letsbe-ops"] and body["user_data"] == "#cloud-config\n"
    assert body["labels"] == {"managed-by": "letsbe", "letsbe-order": "1"}
    assert f.servers[int(alloc.provider_ref)]["status"] == "running"
    assert any(path.startswith("/v1/actions/") for _, path in f.requests), "the create action was polled"


async def test_actions_are_polled_from_a_short_first_wait_backing_off_to_the_interval(fake):
    """A poll interval of an hour: only the short first waits (doubling) can see the action finish in this test."""
    f, url = fake
    f.action_polls = 4
    async with HetznerProvider(_config(url, poll_first=0.001, poll_interval=3600.0, action_timeout=7200.0)) as p:
        async with asyncio.timeout(30):
            alloc = await p.allocate_server(Tier.LITE, Region.EU, key="letsbe-backoff")
    assert f.servers[int(alloc.provider_ref)]["status"] == "running"
    assert sum(path.startswith("/v1/actions/") for _, path in f.requests) == 4


async def test_allocating_again_with_the_same_key_finds_the_first_server(fake, hetzner):
    f, _ = fake
    first = await hetzner.allocate_server(Tier.LITE, Region.EU, key="letsbe-same")
    second = await hetzner.allocate_server(Tier.LITE, Region.EU, key="letsbe-same")
    assert first.provider_ref == second.provider_ref
    assert f.creates == 1


async def test_a_5xx_after_hetzner_created_the_server_does_not_create_a_second_one(fake, hetzner):
    f, _ = fake
    f.inject("POST", "/v1/servers", 503, after_apply=True)
    alloc = await hetzner.allocate_server(Tier.BUILD, Region.EU, key="letsbe-lying-5xx")
    assert f.creates == 1
    assert list(f.servers) == [int(alloc.provider_ref)]


async def test_429_waits_as_long_as_retry_after_says(fake, hetzner):
    f, _ = fake
    f.inject("GET", "/v1/servers", 429, retry_after=1)
    started = time.monotonic()
    assert await hetzner.find_server("nobody") is None
    assert time.monotonic() - started >= 0.95
    assert [m for m, p in f.requests if p == "/v1/servers"] == ["GET", "GET"]


async def test_5xx_beyond_the_retry_budget_is_a_typed_unavailable_error(fake, hetzner):
    f, _ = fake
    f.inject("GET", "/v1/servers", 500, times=10)
    with pytest.raises(ProviderUnavailable) as info:
        await hetzner.find_server("x")
    assert info.value.retryable and info.value.status == 500
    assert len(f.requests) == FAST.attempts


async def test_a_create_action_that_ends_in_error_raises_action_failed(fake, hetzner):
    f, _ = fake
    f.fail_create_actions = True
    with pytest.raises(ProviderActionFailed, match="Action failed"):
        await hetzner.allocate_server(Tier.BUILD, Region.EU, key="letsbe-doomed")


async def test_invalid_input_is_rejected_at_once_with_hetzners_message(fake):
    f, url = fake
    async with HetznerProvider(_config(url, image="windows-95")) as p:
        with pytest.raises(ProviderRejected, match="invalid_input") as info:
            await p.allocate_server(Tier.BUILD, Region.EU, key="letsbe-bad-image")
    assert info.value.status == 400 and not info.value.retryable
    assert [m for m, _ in f.requests].count("POST") == 1, "4xx is not retried"


async def test_a_wrong_token_is_an_auth_error(fake):
    _, url = fake
    async with HetznerProvider(_config(url, token="wrong")) as p:
        with pytest.raises(ProviderAuthError):
            await p.find_server("x")


async def test_deallocate_deletes_the_server_and_a_missing_one_is_fine(fake, hetzner):
    f, _ = fake
    alloc = await hetzner.allocate_server(Tier.BUILD, Region.EU, key="letsbe-gone")
    await hetzner.deallocate_server(alloc.provider_ref)
    assert f.servers == {} and len(f.deleted) == 1
    await hetzner.deallocate_server(alloc.provider_ref)  # already gone: no error
    assert await hetzner.deallocate_key("letsbe-gone") is False


async def test_listing_follows_pagination_to_the_last_page(fake, hetzner):
    for i in range(7):
        await hetzner.allocate_server(Tier.LITE, Region.EU, key=f"letsbe-page-{i}", labels={"batch": "p"})
    await hetzner.allocate_server(Tier.LITE, Region.EU, key="letsbe-other")
    names = [s["name"] async for s in hetzner.list_servers("batch=p", per_page=3)]
    assert names == [f"letsbe-page-{i}" for i in range(7)]


async def test_status_and_snapshot_go_through_the_api(fake, hetzner):
    f, _ = fake
    alloc = await hetzner.allocate_server(Tier.SCALE, Region.EU, key="letsbe-snap")
    status = await hetzner.get_server_status(alloc.provider_ref)
    assert status.state is ServerState.RUNNING and status.ipv4 == ("127.0.0.1",)
    snap = await hetzner.create_snapshot(alloc.provider_ref, name="before-migration")
    assert f.images[int(snap.snapshot_ref)]["status"] == "available"
    assert f.images[int(snap.snapshot_ref)]["description"] == "before-migration"


async def test_snapshots_of_a_server_are_listed_and_deleted_and_survive_the_server(fake, hetzner):
    f, _ = fake
    a = await hetzner.allocate_server(Tier.BUILD, Region.EU, key="snap-a")
    b = await hetzner.allocate_server(Tier.BUILD, Region.EU, key="snap-b")
    first = await hetzner.create_snapshot(a.provider_ref, name="day-1")
    await hetzner.create_snapshot(a.provider_ref, name="day-2")
    await hetzner.create_snapshot(b.provider_ref, name="other-server")
    listed = await hetzner.list_snapshots(a.provider_ref)
    assert [(s.name, s.ready) for s in listed] == [("day-1", True), ("day-2", True)]
    await hetzner.delete_snapshot(first)
    await hetzner.delete_snapshot(first)  # Hetzner answers 404 now: not an error
    assert [s.name for s in await hetzner.list_snapshots(a.provider_ref)] == ["day-2"]
    assert [i["description"] for i in f.deleted_images] == ["day-1"]
    await hetzner.deallocate_server(a.provider_ref)  # images outlive their server, as on Hetzner
    assert [s.name for s in await hetzner.list_snapshots(a.provider_ref)] == ["day-2"]


async def test_resuming_a_server_whose_start_failed_fails_at_once_instead_of_waiting(fake):
    f, url = fake
    f.fail_create_actions = True
    async with HetznerProvider(_config(url, action_timeout=120.0)) as hetzner:  # waiting would take two minutes
        with pytest.raises(ProviderActionFailed):
            await hetzner.allocate_server(Tier.BUILD, Region.EU, key="letsbe-off")
        started = time.monotonic()
        with pytest.raises(ProviderActionFailed, match="is off"):
            await hetzner.allocate_server(Tier.BUILD, Region.EU, key="letsbe-off")  # a redelivery finds it "off"
    assert time.monotonic() - started < 30 and f.creates == 1
