"""The console's pool and servers pages over HTTP: register (host key pinned), retire with a typed confirmation,
pool minimums, costs and the migration check; CSRF, scopes, escaping and bad input on each."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from hub_testing.console import make_operator
from hub_testing.servers import add_servers
from letsbe_fakes.ssh_target import SshTarget
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.servers.models import InventoryStatus, MigrationProposal, PoolPolicy, Server

from .test_console_pages import ORIGIN, XSS, app, client, jane, settings, signed_in  # noqa: F401 - fixtures

FINGERPRINT = "SHA256:" + "Z" * 43


def server_form(token: str, **values: str) -> dict[str, str]:
    return {"csrf_token": token, "provider": "netcup", "provider_ref": f"v{uuid.uuid4().hex[:10]}", "tier": "build",
            "region": "eu", "ipv4": "192.0.2.10", "ssh_port": "22", "ssh_user": "letsbe",
            "host_key_fingerprint": FINGERPRINT, **values}


async def policy(sessions, tier: str, region: str) -> tuple[int, int] | None:
    async with sessions() as s:
        row = (await s.execute(select(PoolPolicy).where(PoolPolicy.tier == tier, PoolPolicy.region == region))).scalar()
    return (row.min_available, row.target_available) if row else None


async def servers_in(sessions) -> list[Server]:
    async with sessions() as s:
        return list((await s.execute(select(Server))).scalars())


async def test_register_a_pool_server_then_retire_it_with_its_name_typed(client, jane, sessions):  # noqa: F811
    token = await signed_in(client, jane)
    r = await client.post("/console/servers", data=server_form(token, name=XSS), headers=ORIGIN)
    assert r.status_code == 303, r.text
    [server] = await servers_in(sessions)
    assert r.headers["location"] == f"/console/servers/{server.id}?registered=1"
    assert server.status == "AVAILABLE" and server.host_key_fingerprint == FINGERPRINT and server.name == XSS
    assert server.registered_by == "operator:jane"
    for path in [r.headers["location"], "/console/servers", "/console/servers?status=AVAILABLE"]:
        page = await client.get(path)
        assert page.status_code == 200 and FINGERPRINT in page.text, path
        assert "<script>alert" not in page.text and "&lt;script&gt;alert(" in page.text, path
    assert "pinned" in (await client.get(r.headers["location"])).text
    assert XSS not in (await client.get("/console/servers?status=RETIRED")).text  # the filter by state

    wrong = await client.post(f"/console/servers/{server.id}/retire", data={"confirm": "nope", "csrf_token": token},
                              headers=ORIGIN)
    assert wrong.status_code == 422 and "Type the server&#39;s name" in wrong.text
    assert (await servers_in(sessions))[0].status == "AVAILABLE"
    r = await client.post(f"/console/servers/{server.id}/retire", data={"confirm": XSS, "csrf_token": token},
                          headers=ORIGIN)
    assert r.status_code == 303 and r.headers["location"] == f"/console/servers/{server.id}"
    [retired] = await servers_in(sessions)
    assert retired.status == "RETIRED" and retired.retired_at is not None and retired.retired_by == "operator:jane"
    page = await client.get(r.headers["location"])
    assert "RETIRED" in page.text and 'action="/console/servers/' not in page.text  # nothing left to retire


async def test_without_a_fingerprint_the_host_key_is_read_from_the_server_and_pinned(client, jane, sessions):  # noqa: F811
    token = await signed_in(client, jane)
    with SshTarget() as target:
        r = await client.post("/console/servers", headers=ORIGIN, data=server_form(
            token, ipv4="127.0.0.1", ssh_port=str(target.port), host_key_fingerprint=""))
        assert r.status_code == 303, r.text
        page = await client.get(r.headers["location"])
        assert f'<code id="host-key">{target.fingerprint}</code>' in page.text
        # nobody answering: the form again, filled in, with why; nothing registered
        r = await client.post("/console/servers", headers=ORIGIN, data=server_form(
            token, provider_ref="other-one", ipv4="127.0.0.1", ssh_port="1", host_key_fingerprint=""))
    assert r.status_code == 422 and "Could not read the SSH host key" in r.text and 'value="other-one"' in r.text
    assert len(await servers_in(sessions)) == 1


async def test_bad_registrations_show_the_form_again_and_register_nothing(client, jane, sessions):  # noqa: F811
    token = await signed_in(client, jane)
    for bad, expected in [({"ipv4": "999.1.1.1"}, "ipv4"), ({"tier": "huge"}, "tier"),
                          ({"host_key_fingerprint": "MD5:aa"}, "host_key_fingerprint"), ({"ssh_port": "0"}, "ssh_port"),
                          ({"provider_ref": "a b"}, "provider_ref"), ({"name": "x\x00y"}, "control characters")]:
        r = await client.post("/console/servers", data=server_form(token, **bad), headers=ORIGIN)
        assert r.status_code == 422 and expected in r.text and "text/html" in r.headers["content-type"], bad
    assert await servers_in(sessions) == []
    form = server_form(token, provider_ref="twice")
    assert (await client.post("/console/servers", data=form, headers=ORIGIN)).status_code == 303
    again = await client.post("/console/servers", data=form, headers=ORIGIN)
    assert again.status_code == 409 and "already registered" in again.text
    assert (await client.get(f"/console/servers/{uuid.uuid4()}")).status_code == 404
    assert (await client.get("/console/servers?status=NOPE")).status_code == 422
    r = await client.post(f"/console/servers/{uuid.uuid4()}/retire", data={"confirm": "x", "csrf_token": token},
                          headers=ORIGIN)
    assert r.status_code == 404


async def test_server_forms_need_the_csrf_token_and_this_origin(client, jane, sessions):  # noqa: F811
    token = await signed_in(client, jane)
    [server] = await add_servers(sessions, 1)
    before = await policy(sessions, "scale", "us")
    posts = [("/console/servers", server_form("")), (f"/console/servers/{server.id}/retire", {"confirm": server.name}),
             ("/console/servers/pools", {"tier": "scale", "region": "us", "min_available": "7",
                                         "target_available": "9"}),
             ("/console/servers/migrations/check", {})]
    for path, data in posts:
        for headers, body in [(ORIGIN, {**data, "csrf_token": ""}),
                              ({"Origin": "https://evil.example"}, {**data, "csrf_token": token})]:
            r = await client.post(path, data=body, headers=headers)
            assert r.status_code == 403, (path, headers)
    assert [s.status for s in await servers_in(sessions)] == ["AVAILABLE"]
    assert await policy(sessions, "scale", "us") == before != (7, 9)


async def test_a_read_only_operator_sees_servers_but_cannot_register_retire_or_resize(client, sessions):  # noqa: F811
    reader = await make_operator(sessions, "viewer", [Scope.SERVERS_READ])
    token = await signed_in(client, reader)
    [server] = await add_servers(sessions, 1)
    page = await client.get(f"/console/servers/{server.id}")
    assert page.status_code == 200 and "/retire" not in page.text
    listing = await client.get("/console/servers")
    assert listing.status_code == 200 and "Register a pool server" not in listing.text
    costs = await client.get("/console/servers/costs")
    assert costs.status_code == 200 and "Run the check now" not in costs.text
    for path, data in [(f"/console/servers/{server.id}/retire", {"confirm": server.name}),
                       ("/console/servers", server_form(token)),
                       ("/console/servers/pools", {"tier": "build", "region": "eu", "min_available": "1",
                                                   "target_available": "1"}),
                       ("/console/servers/migrations/check", {})]:
        r = await client.post(path, data={**data, "csrf_token": token}, headers=ORIGIN)
        assert r.status_code == 403 and "servers:write" in r.text, path
    assert [s.status for s in await servers_in(sessions)] == ["AVAILABLE"]
    nobody = await make_operator(sessions, "orders-only", [Scope.ORDERS_READ])
    await signed_in(client, nobody)
    assert (await client.get("/console/servers")).status_code == 403


async def test_pool_minimums_are_set_and_validated(client, jane, sessions):  # noqa: F811
    token = await signed_in(client, jane)
    await add_servers(sessions, 1, tier="scale", region="us")
    form = {"tier": "scale", "region": "us", "min_available": "3", "target_available": "5", "csrf_token": token}
    r = await client.post("/console/servers/pools", data=form, headers=ORIGIN)
    assert r.status_code == 303 and r.headers["location"] == "/console/servers"
    page = await client.get("/console/servers")
    assert "below minimum" in page.text  # 1 AVAILABLE against a minimum of 3
    for bad in [{"target_available": "2"}, {"min_available": "-1"}, {"tier": "huge"}, {"min_available": "many"}]:
        r = await client.post("/console/servers/pools", data={**form, **bad}, headers=ORIGIN)
        assert r.status_code == 422 and "text/html" in r.headers["content-type"], bad
    assert await policy(sessions, "scale", "us") == (3, 5)
    async with sessions() as s:
        set_by = await s.scalar(select(PoolPolicy.updated_by).where(PoolPolicy.tier == "scale"))
    assert set_by == "operator:jane" and "operator:jane" in (await client.get("/console/servers")).text


async def test_costs_and_the_migration_check_run_from_the_page(client, jane, sessions):  # noqa: F811
    token = await signed_in(client, jane)
    tenant_id = uuid.uuid4()
    await add_servers(sessions, 1, provider="hetzner", status=InventoryStatus.IN_USE, tenant_id=tenant_id,
                      order_id=tenant_id)
    [spare] = await add_servers(sessions, 1)
    page = await client.get("/console/servers/costs")
    assert page.status_code == 200 and "No proposals." in page.text and "hetzner" in page.text
    r = await client.post("/console/servers/migrations/check", data={"csrf_token": token}, headers=ORIGIN)
    assert r.status_code == 303
    async with sessions() as s:
        [proposal] = (await s.execute(select(MigrationProposal))).scalars()
    assert proposal.tenant_id == tenant_id and proposal.to_server_id == spare.id
    page = await client.get("/console/servers/costs")
    assert str(tenant_id) in page.text and f"/console/servers/{spare.id}" in page.text
