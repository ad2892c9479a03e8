"""The Netcup SCP client against the loopback fake of the SCP REST API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from letsbe_fakes import LoopbackServer
from letsbe_fakes.netcup import FakeNetcup
from letsbe_hub.providers import (
    ProviderActionFailed,
    ProviderAuthError,
    ProviderNotFound,
    ProviderUnavailable,
    ServerAllocator,
    ServerProvider,
    ServerState,
)
from letsbe_hub.providers.http import RetryPolicy
from letsbe_hub.providers.netcup import NetcupConfig, NetcupProvider

FAST = RetryPolicy(attempts=3, backoff_base=0.01, backoff_max=0.05)


@pytest.fixture
def fake() -> Iterator[tuple[FakeNetcup, str]]:
    f = FakeNetcup(task_polls=2)
    f.add_server(4242, ipv4="127.0.0.1")
    with LoopbackServer(f.app) as srv:
        yield f, srv.url


def _provider(url: str, refresh: str = "netcup-offline-refresh-token") -> NetcupProvider:
    return NetcupProvider(
        NetcupConfig(
            api_url=url + "/scp-core",
            token_url=url + "/realms/scp/protocol/openid-connect/token",
            refresh_token=refresh,
            retry=FAST,
            poll_interval=0.01,
            task_timeout=5,
        )
    )


@pytest_asyncio.fixture
async def netcup(fake) -> AsyncIterator[NetcupProvider]:
    async with _provider(fake[1]) as p:
        yield p


async def test_status_reads_the_live_state_with_one_token_for_many_calls(fake, netcup):
    f, _ = fake
    assert isinstance(netcup, ServerProvider)
    status = await netcup.get_server_status("4242")
    assert status.state is ServerState.RUNNING and status.provider_state == "RUNNING"
    assert status.ipv4 == ("127.0.0.1",)
    f.servers[4242]["serverLiveInfo"]["state"] = "SHUTOFF"
    assert (await netcup.get_server_status("4242")).state is ServerState.STOPPED
    assert f.token_requests == 1


async def test_an_expired_access_token_is_refreshed_once_and_the_call_succeeds(fake, netcup):
    f, _ = fake
    await netcup.get_server_status("4242")
    f.expire_access_tokens()
    assert (await netcup.get_server_status("4242")).state is ServerState.RUNNING
    assert f.token_requests == 2


async def test_a_revoked_refresh_token_is_an_auth_error(fake):
    async with _provider(fake[1], refresh="revoked") as p:
        with pytest.raises(ProviderAuthError, match="invalid_grant"):
            await p.get_server_status("4242")


async def test_snapshot_waits_for_the_task_and_returns_the_snapshot(fake, netcup):
    f, _ = fake
    snap = await netcup.create_snapshot("4242", name="letsbe-2026-11-27")
    assert snap.name == "letsbe-2026-11-27" and snap.created_at is not None
    assert f.snapshots[4242]["letsbe-2026-11-27"]["online"] is True
    assert f.servers[4242]["serverLiveInfo"]["state"] == "RUNNING"


async def test_snapshots_are_listed_oldest_first_and_deleted_once(fake, netcup):
    f, _ = fake
    for name in ("letsbe-a", "letsbe-b"):
        await netcup.create_snapshot("4242", name=name)
    listed = await netcup.list_snapshots("4242")
    assert [s.name for s in listed] == ["letsbe-a", "letsbe-b"]
    await netcup.delete_snapshot(listed[0])
    await netcup.delete_snapshot(listed[0])  # gone already: not an error
    assert list(f.snapshots[4242]) == ["letsbe-b"]


async def test_a_failed_snapshot_task_raises_action_failed(fake, netcup):
    f, _ = fake
    f.fail_snapshot_tasks = True
    with pytest.raises(ProviderActionFailed, match="Snapshot creation failed"):
        await netcup.create_snapshot("4242", name="doomed")
    assert f.snapshots[4242] == {}


async def test_maintenance_503_is_retried_and_unknown_servers_are_not_found(fake, netcup):
    f, _ = fake
    f.inject("GET", "/scp-core/api/v1/servers/4242", 503, message="Node is in maintenance mode.", retry_after=0)
    assert (await netcup.get_server_status("4242")).state is ServerState.RUNNING
    with pytest.raises(ProviderNotFound):
        await netcup.get_server_status("9999")
    f.inject("GET", "/scp-core/api/v1/servers/4242", 503, times=5)
    with pytest.raises(ProviderUnavailable):
        await netcup.get_server_status("4242")


async def test_netcup_servers_are_not_created_or_deleted_by_api(netcup):
    """Netcup servers are bought on contract: the client is a provider (status, snapshots) but no allocator."""
    assert isinstance(netcup, ServerProvider)
    assert not isinstance(netcup, ServerAllocator)
