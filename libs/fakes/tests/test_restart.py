"""The fakes behave like the providers they stand for across a restart of `make run`, and Hetzner's server types
are the ones Hetzner publishes; the sandbox's knobs (a slow boot, a mailbox on disk) do what they say."""

from __future__ import annotations

import contextlib
import smtplib
from pathlib import Path

import httpx

from letsbe_fakes import LoopbackServer
from letsbe_fakes.cloudflare import FakeCloudflare
from letsbe_fakes.hetzner import FakeHetzner
from letsbe_fakes.netcup import FakeNetcup
from letsbe_fakes.smtp import FakeSmtp
from letsbe_fakes.stripe import StripeFake
from letsbe_platform.testing import eventually_blocking

HZ = {"Authorization": "Bearer t"}


def create(url: str, name: str, stype: str = "cx22", location: str = "nbg1") -> httpx.Response:
    body = {"name": name, "server_type": stype, "image": "debian-12", "location": location}
    return httpx.post(url + "/v1/servers", headers=HZ, json=body)


def test_hetzner_ids_and_addresses_continue_after_a_restart(tmp_path: Path) -> None:
    """A restarted sandbox numbered its servers from 1000 again: the hub's inventory then hit unique keys."""
    first = FakeHetzner("t", ipv4_per_server=True, state_dir=tmp_path)
    with LoopbackServer(first.app) as srv:
        a = create(srv.url, "a").json()["server"]
    second = FakeHetzner("t", ipv4_per_server=True, state_dir=tmp_path)
    with LoopbackServer(second.app) as srv:
        assert httpx.get(f"{srv.url}/v1/servers/{a['id']}", headers=HZ).json()["server"]["name"] == "a"
        assert create(srv.url, "a").json()["error"]["code"] == "uniqueness_error"
        b = create(srv.url, "b").json()["server"]
    assert b["id"] > a["id"]
    assert [s["public_net"]["ipv4"]["ip"] for s in (a, b)] == ["127.0.0.2", "127.0.0.3"]


def test_hetzner_addresses_stay_in_their_24_and_past_it_the_project_is_full(tmp_path: Path) -> None:
    """A sandbox owns one 127.B.C.0/24: the next /24 may be another sandbox's, so its servers never spill over."""
    fake = FakeHetzner("t", ipv4_per_server=True, first_ipv4=9 << 16 | 8 << 8 | 253, state_dir=tmp_path)
    with LoopbackServer(fake.app) as srv:
        ips = [create(srv.url, name).json()["server"]["public_net"]["ipv4"]["ip"] for name in ("a", "b")]
        full = create(srv.url, "c")
    assert ips == ["127.9.8.253", "127.9.8.254"]
    assert full.status_code == 403
    assert full.json()["error"]["code"] == "resource_limit_exceeded"
    assert [s["name"] for s in fake.servers.values()] == ["a", "b"]


def test_hetzner_without_a_state_dir_keeps_everything_in_memory(tmp_path: Path) -> None:
    fake = FakeHetzner("t")
    with LoopbackServer(fake.app) as srv:
        assert create(srv.url, "a").json()["server"]["public_net"]["ipv4"]["ip"] == "127.0.0.1"
    assert FakeHetzner("t").servers == {}


def test_hetzner_server_types_are_the_published_sizes_and_only_where_sold() -> None:
    fake = FakeHetzner("t")
    with LoopbackServer(fake.app) as srv:
        types = {t["name"]: t for t in httpx.get(srv.url + "/v1/server_types", headers=HZ).json()["server_types"]}
        sizes = {n: (t["cores"], t["memory"], t["disk"], t["cpu_type"], t["architecture"]) for n, t in types.items()}
        assert sizes["cx22"] == (2, 4.0, 40, "shared", "x86")
        assert sizes["cpx31"] == (4, 8.0, 160, "shared", "x86")
        assert sizes["cax41"] == (16, 32.0, 320, "shared", "arm")
        assert sizes["ccx63"] == (48, 192.0, 960, "dedicated", "x86")
        assert set(types) >= {f"cx{n}2" for n in (2, 3, 4, 5)} | {f"cpx{n}1" for n in (1, 2, 3, 4, 5)}
        cx22 = types["cx22"]["prices"][0]
        assert cx22["price_monthly"]["net"] == "3.79" and set(cx22["price_hourly"]) == {"net", "gross"}
        assert {p["location"] for p in types["cx22"]["prices"]} == {"fsn1", "nbg1", "hel1"}
        # A created server carries its type as GET /server_types describes it.
        server = create(srv.url, "a", "cpx31").json()["server"]
        assert server["server_type"] == types["cpx31"] and server["primary_disk_size"] == 160
        refused = create(srv.url, "b", "cx22", "ash")
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_input"


def test_cloudflare_zones_and_records_survive_a_restart(tmp_path: Path) -> None:
    first = FakeCloudflare(token="t", auto_zones=True, state_dir=tmp_path)
    zone = first.add_zone("example.com")
    with LoopbackServer(first.app) as srv:
        r = httpx.post(
            f"{srv.url}/client/v4/zones/{zone.id}/dns_records",
            headers={"Authorization": "Bearer t"},
            json={"type": "A", "name": "shop.example.com", "content": "127.0.0.2", "ttl": 60},
        )
        assert r.status_code == 200, r.text
    second = FakeCloudflare(token="t", auto_zones=True, state_dir=tmp_path)
    assert [(r["name"], r["content"]) for r in second.records("example.com")] == [("shop.example.com", "127.0.0.2")]
    assert second.zone("example.com").id == zone.id


def test_stripe_sessions_and_events_survive_a_restart(tmp_path: Path) -> None:
    first = StripeFake(state_dir=tmp_path)
    with LoopbackServer(first.app) as srv:
        r = httpx.post(
            srv.url + "/v1/checkout/sessions",
            headers={"Authorization": f"Bearer {first.api_key}"},
            data={
                "mode": "payment",
                "success_url": "https://example.com/ok",
                "line_items[0][quantity]": "1",
                "line_items[0][price_data][currency]": "eur",
                "line_items[0][price_data][unit_amount]": "1000",
                "line_items[0][price_data][product_data][name]": "Lite",
            },
        )
        assert r.status_code == 200, r.text
        session = r.json()["id"]
        assert httpx.post(f"{srv.url}/_fake/checkout/sessions/{session}/complete").status_code == 200
    second = StripeFake(state_dir=tmp_path)
    assert second.sessions[session]["status"] == "complete"
    assert [e["type"] for e in second.events] == ["checkout.session.completed"]


def test_hetzner_actions_run_at_least_action_seconds(tmp_path: Path) -> None:
    """The sandbox's slow boot (LETSBE_SANDBOX_SLOW_SECONDS): polled at once, the server is still initializing."""
    fake = FakeHetzner("t")
    fake.action_seconds = 0.5
    with LoopbackServer(fake.app) as srv:
        created = create(srv.url, "a").json()
        action = f"{srv.url}/v1/actions/{created['action']['id']}"
        assert httpx.get(action, headers=HZ).json()["action"]["status"] == "running"
        assert fake.servers[created["server"]["id"]]["status"] == "initializing"
        eventually_blocking(
            lambda: httpx.get(action, headers=HZ).json()["action"]["status"] != "running", "the action finished"
        )
        assert fake.servers[created["server"]["id"]]["status"] == "running"


def test_a_held_hetzner_action_keeps_running_until_released() -> None:
    fake = FakeHetzner("t")
    fake.hold_actions = True
    with LoopbackServer(fake.app) as srv:
        created = create(srv.url, "a").json()
        action = f"{srv.url}/v1/actions/{created['action']['id']}"
        for _ in range(5):
            assert httpx.get(action, headers=HZ).json()["action"]["status"] == "running"
        fake.hold_actions = False
        assert httpx.get(action, headers=HZ).json()["action"]["status"] == "success"
        assert fake.servers[created["server"]["id"]]["status"] == "running"


def test_smtp_keeps_each_accepted_message_in_its_spool(tmp_path: Path) -> None:
    with FakeSmtp(spool_dir=tmp_path / "mail") as smtp, smtplib.SMTP(smtp.host, smtp.port) as client:
        client.sendmail("a@example.com", ["b@example.com"], "To: b@example.com\r\nSubject: hi\r\n\r\nhello\r\n")
        smtp.fail_next(1, code=451)
        with contextlib.suppress(smtplib.SMTPDataError):
            client.sendmail("a@example.com", ["c@example.com"], "To: c@example.com\r\n\r\nrefused\r\n")
    files = list((tmp_path / "mail").glob("*.eml"))
    assert len(files) == 1 and "Subject: hi" in files[0].read_text()


def netcup_token(url: str) -> dict[str, str]:
    form = {"client_id": "scp", "grant_type": "refresh_token", "refresh_token": "netcup-offline-refresh-token"}
    access = httpx.post(url + "/realms/scp/protocol/openid-connect/token", data=form).json()["access_token"]
    return {"Authorization": f"Bearer {access}"}


def test_a_netcup_reinstall_runs_for_its_time_and_finishes_after_a_restart(tmp_path: Path) -> None:
    """An install takes a while at netcup (the server is SHUTOFF meanwhile) and a sandbox restarted in the middle
    neither loses nor restarts it: it finishes when its time is up, once."""
    first = FakeNetcup(install_seconds=1.0, state_dir=tmp_path)
    first.add_server(4711)
    with LoopbackServer(first.app) as srv:
        h = netcup_token(srv.url)
        api = srv.url + "/scp-core/api/v1"
        flavours = httpx.get(f"{api}/servers/4711/imageflavours", headers=h).json()
        debian = next(f["id"] for f in flavours if f["alias"] == "Debian 12")
        task = httpx.post(f"{api}/servers/4711/image", headers=h, json={"imageFlavourId": debian, "sshKeyIds": [7]})
        assert task.status_code == 202 and task.json()["state"] == "RUNNING", task.text
        again = httpx.post(f"{api}/servers/4711/image", headers=h, json={"imageFlavourId": debian})
        assert again.status_code == 400  # one install at a time
        state = httpx.get(f"{api}/servers/4711", headers=h).json()["serverLiveInfo"]["state"]
        assert state == "SHUTOFF"
    second = FakeNetcup(install_seconds=1.0, state_dir=tmp_path)
    with LoopbackServer(second.app) as srv:
        h = netcup_token(srv.url)
        api = srv.url + "/scp-core/api/v1"
        uuid = task.json()["uuid"]
        assert [t["uuid"] for t in httpx.get(f"{api}/tasks", headers=h).json()] == [uuid]
        eventually_blocking(
            lambda: httpx.get(f"{api}/tasks/{uuid}", headers=h).json()["state"] == "FINISHED", "the install finished"
        )
        assert httpx.get(f"{api}/servers/4711", headers=h).json()["serverLiveInfo"]["state"] == "RUNNING"
    assert len(second.installs) == 1 and second.installs[0]["setup"]["sshKeyIds"] == [7]


def test_a_netcup_install_with_bad_input_is_refused_and_changes_nothing() -> None:
    fake = FakeNetcup()
    fake.add_server(4711)
    with LoopbackServer(fake.app) as srv:
        h = netcup_token(srv.url)
        url = srv.url + "/scp-core/api/v1/servers/4711/image"
        for body, status in (
            ({}, 422),
            ({"imageFlavourId": "12"}, 422),
            ({"imageFlavourId": 12, "hostname": "not a host"}, 422),
            ({"imageFlavourId": 12, "sshKeyIds": ["x"]}, 422),
            ({"imageFlavourId": 999}, 400),
        ):
            assert httpx.post(url, headers=h, json=body).status_code == status, body
        unknown = httpx.post(srv.url + "/scp-core/api/v1/servers/1/image", headers=h, json={"imageFlavourId": 12})
        assert unknown.status_code == 404
    assert fake.installs == [] and fake.servers[4711]["serverLiveInfo"]["state"] == "RUNNING"
