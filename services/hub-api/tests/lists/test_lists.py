"""Every list of the admin API pages the same way: ``{items, next_cursor}``, ``?limit=`` and ``?cursor=``.

Paging through a list hands out each row exactly once, in the list's order, even while rows are added between
pages; a cursor the list did not hand out is a 400 problem; ``limit`` is bounded. And the filters operators need.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from letsbe_hub.alerts import repository as alerts_repo
from letsbe_hub.alerts.models import AlertRecord
from letsbe_hub.app import create_app
from letsbe_hub.approvals import repository as approvals_repo
from letsbe_hub.approvals.models import ApprovalRow
from letsbe_hub.auth import service as tokens_service
from letsbe_hub.auth.models import ApiToken
from letsbe_hub.commands import repository as commands_repo
from letsbe_hub.commands.models import Command
from letsbe_hub.customers import service as customers_service
from letsbe_hub.customers.models import Customer, PushDevice
from letsbe_hub.orders import repository as orders_repo
from letsbe_hub.orders.models import Order
from letsbe_hub.rollouts import repository as rollouts_repo
from letsbe_hub.rollouts.models import Rollout, RolloutTarget
from letsbe_hub.rollouts.schemas import DEFAULT_STAGES
from letsbe_hub.servers import repository as servers_repo
from letsbe_hub.servers.models import AllocationHold, MigrationProposal, Server
from letsbe_hub.tenants import repository as tenants_repo
from letsbe_hub.tenants.models import Tenant
from letsbe_platform.db import unit_of_work
from letsbe_platform.pagination import DEFAULT_LIMIT, MAX_LIMIT, Keyset

# Rows of every list belong to these (the commands, push-device and target lists are per tenant and per rollout).
TENANT = uuid.UUID("00000000-0000-4000-8000-00000000000a")
CUSTOMER = uuid.UUID("00000000-0000-4000-8000-00000000000c")
ROLLOUT = uuid.UUID("00000000-0000-4000-8000-00000000000b")
LATER = datetime.now(UTC) + timedelta(days=1)


def _order(i: int, **kw: Any) -> Order:
    values = {
        "customer_name": "Acme GmbH",
        "customer_email": "owner@acme.test",
        "domain": f"shop{i}.acme-{uuid.uuid4().hex[:6]}.test",
        "tier": "build",
        "region": "eu",
        "tools": ["nextcloud"],
        "automation_mode": "AUTO",
        "amount_cents": 4900,
        "currency": "eur",
        "created_by": "test",
        "status": "PENDING_PAYMENT",
    }
    return Order(**{"id": uuid.uuid4(), **values} | kw)


def _tenant(i: int, **kw: Any) -> Tenant:
    tid = uuid.uuid4()
    values = {"order_id": tid, "domain": f"t{i}-{tid.hex[:8]}.example.com", "tier": "build", "region": "eu"}
    return Tenant(id=tid, **values | kw)


def _command(i: int, **kw: Any) -> Command:
    values = {
        "tenant_id": TENANT,
        "agent_kind": "safety-wrapper",
        "type": "restart",
        "params": {},
        "idempotency_key": uuid.uuid4().hex,
        "status": "SUCCEEDED",
        "created_by": "test",
        "expires_at": LATER,
        "deadline_seconds": 60,
    }
    return Command(**{"id": uuid.uuid4(), **values} | kw)


def _alert(i: int, **kw: Any) -> AlertRecord:
    now = datetime.now(UTC)
    values = {
        "tenant_id": TENANT,
        "rule": f"rule.{i}",
        "severity": "medium",
        "status": "open",
        "summary": "something",
        "first_seen": now,
        "last_seen": now,
        "count": 1,
    }
    return AlertRecord(**{"alert_id": uuid.uuid4(), **values} | kw)


def _server(i: int, **kw: Any) -> Server:
    ref = uuid.uuid4().hex[:12]
    values = {
        "provider": "netcup",
        "provider_ref": ref,
        "name": f"netcup-{ref}",
        "tier": "build",
        "region": "eu",
        "ipv4": "127.0.0.1",
        "host_key_fingerprint": "SHA256:" + "Q" * 43,
        "status": "RETIRED",  # out of every pool: no worker acts on it
    }
    return Server(**{"id": uuid.uuid4(), **values} | kw)


def _approval(i: int, **kw: Any) -> ApprovalRow:
    values = {
        "tenant_id": TENANT,
        "agent_id": uuid.uuid4(),
        "tool": "ghost",
        "action": "posts.delete",
        "risk_class": "RED",
        "args_hash": uuid.uuid4().hex * 2,
        "args_preview": {},
        "reasons": [],
        "status": "REJECTED",
        "expires_at": LATER,
    }
    return ApprovalRow(**{"id": uuid.uuid4(), **values} | kw)


def _rollout(i: int, **kw: Any) -> Rollout:
    values = {
        "component": "openclaw",
        "agent_kind": "safety-wrapper",
        "image": "registry.letsbe.biz/letsbe/openclaw",
        "digest": "sha256:" + "a" * 64,
        "version": f"1.{i}.0",
        "status": "COMPLETED",
        "stages": [s.model_dump(mode="json") for s in DEFAULT_STAGES],
        "concurrency": 10,
        "min_healthy_seconds": 30,
        "deadline_seconds": 300,
        "created_by": "test",
    }
    return Rollout(**{"id": uuid.uuid4(), **values} | kw)


def _target(i: int, **kw: Any) -> RolloutTarget:
    return RolloutTarget(rollout_id=ROLLOUT, tenant_id=uuid.uuid4(), **{"stage": 0, "position": i} | kw)


def _hold(i: int, **kw: Any) -> AllocationHold:
    oid = uuid.uuid4()
    values = {"tier": "build", "region": "eu", "order_spec": {"domain": f"h{i}.example.com"}, "reason": "pool empty"}
    return AllocationHold(order_id=oid, **values | kw)


def _proposal(i: int, **kw: Any) -> MigrationProposal:
    values = {
        "period": "2026-11",
        "tenant_id": uuid.uuid4(),
        "from_server_id": uuid.uuid4(),
        "to_server_id": uuid.uuid4(),
        "tier": "build",
        "region": "eu",
        "monthly_saving_eur": Decimal("3.50"),
    }
    return MigrationProposal(**{"id": uuid.uuid4(), **values} | kw)


def _token(i: int, **kw: Any) -> ApiToken:
    values = {"name": f"token-{i}", "token_hash": uuid.uuid4().hex * 2, "scopes": ["orders:read"]}
    return ApiToken(**{"id": uuid.uuid4(), **values} | kw)


def _push_device(i: int, **kw: Any) -> PushDevice:
    token = f"device-token-{uuid.uuid4().hex}"
    values = {"customer_id": CUSTOMER, "platform": "fcm", "token": token, "token_hash": uuid.uuid4().hex * 2}
    return PushDevice(**{"id": uuid.uuid4(), **values} | kw)


async def _rollout_row(sessions) -> None:
    await add(sessions, _rollout(0, id=ROLLOUT))


async def _tenant_with_its_customer(sessions) -> None:
    """TENANT serves an order of CUSTOMER's (push devices are listed per tenant, through its customers)."""
    await add(sessions, Customer(id=CUSTOMER, email="owner@acme.test"), _order(0, id=TENANT))
    await add(sessions, Tenant(id=TENANT, order_id=TENANT, domain="t.acme.test", tier="build", region="eu"))


@dataclass(frozen=True)
class Listed:
    path: str
    make: Callable[..., Any]  # (i, **columns) -> a row
    keyset: Keyset
    id_field: str  # the item field that names the row
    params: tuple[tuple[str, str], ...] = ()  # only this test's rows (the hub raises pool alerts of its own)
    setup: Callable[[Any], Awaitable[None]] | None = None  # rows the listed ones hang off


LISTS = {
    "orders": Listed("/api/v1/admin/orders", _order, orders_repo.KEYSET, "id"),
    "tenants": Listed("/api/v1/admin/tenants", _tenant, tenants_repo.KEYSET, "tenant_id"),
    "commands": Listed(f"/api/v1/admin/tenants/{TENANT}/commands", _command, commands_repo.KEYSET, "id"),
    "alerts": Listed("/api/v1/admin/alerts", _alert, alerts_repo.KEYSET, "alert_id", (("tenant_id", str(TENANT)),)),
    "servers": Listed("/api/v1/admin/servers", _server, servers_repo.SERVERS_KEYSET, "id"),
    "held": Listed("/api/v1/admin/servers/held", _hold, servers_repo.HOLDS_KEYSET, "order_id"),
    "migrations": Listed("/api/v1/admin/servers/migrations", _proposal, servers_repo.PROPOSALS_KEYSET, "id"),
    "approvals": Listed("/api/v1/admin/approvals", _approval, approvals_repo.KEYSET, "id"),
    "tokens": Listed("/api/v1/admin/tokens", _token, tokens_service.KEYSET, "id"),
    "rollouts": Listed("/api/v1/admin/rollouts", _rollout, rollouts_repo.KEYSET, "id"),
    "rollout-targets": Listed(
        f"/api/v1/admin/rollouts/{ROLLOUT}/targets",
        _target,
        rollouts_repo.TARGETS_KEYSET,
        "tenant_id",
        setup=_rollout_row,
    ),
    "push-devices": Listed(
        f"/api/v1/admin/tenants/{TENANT}/push-devices",
        _push_device,
        customers_service.PUSH_DEVICES,
        "device_id",
        setup=_tenant_with_its_customer,
    ),
}


async def add(sessions, *rows: Any) -> list[Any]:
    """``rows`` in one transaction: rows keyed by created time share it, so their ids decide their order."""
    async with unit_of_work(sessions) as s:
        s.add_all(rows)
    return list(rows)


async def in_list_order(sessions, listed: Listed, rows: list[Any]) -> list[str]:
    pk = listed.keyset.columns[-1]
    stmt = listed.keyset.order(select(pk).where(pk.in_([getattr(r, pk.key) for r in rows])), limit=10_000, cursor=None)
    async with sessions() as s:
        return [str(v) for v in (await s.execute(stmt)).scalars()]


def test_every_list_route_of_the_hub_is_covered_here():
    doc = create_app().openapi()
    lists = {
        path
        for path, item in doc["paths"].items()
        for op in item.values()
        if {"limit", "cursor"} <= {p["name"] for p in op.get("parameters", [])}
    }
    ours = {p.path.replace(str(TENANT), "{tenant_id}").replace(str(ROLLOUT), "{rollout_id}") for p in LISTS.values()}
    assert lists == ours


@pytest.mark.parametrize("name", list(LISTS))
async def test_paging_hands_out_each_row_once_in_order_while_rows_are_added(hub, admin, sessions, name):
    listed = LISTS[name]
    if listed.setup is not None:
        await listed.setup(sessions)
    originals = await add(sessions, *(listed.make(i) for i in range(7)))
    added = 0
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3, **dict(listed.params)} | ({"cursor": cursor} if cursor else {})
        r = await hub.get(listed.path, params=params, headers=admin)
        assert r.status_code == 200, r.text
        page = r.json()
        assert set(page) == {"items", "next_cursor"} and len(page["items"]) <= 3
        seen += [item[listed.id_field] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        # Two new rows between pages (one each in its own transaction): at the head of a newest-first list, at
        # the tail of an oldest-first one, never in the middle of what is left to page.
        for _ in range(2):
            added += 1
            await add(sessions, listed.make(100 + added))
        assert added < 20, "paging does not end"

    assert len(seen) == len(set(seen)), "a row came twice"
    wanted = await in_list_order(sessions, listed, originals)
    assert [i for i in seen if i in set(wanted)] == wanted  # every row there at the start: once, in order
    if not listed.keyset.descending:  # the added rows were after the cursor: they come at the end
        assert len(seen) == len(originals) + added


@pytest.mark.parametrize("name", list(LISTS))
async def test_a_cursor_the_list_did_not_hand_out_is_a_400_problem(hub, admin, sessions, name):
    listed = LISTS[name]
    if listed.setup is not None:
        await listed.setup(sessions)
    other = LISTS["tenants" if name != "tenants" else "orders"]
    foreign = other.keyset.encode(_stamped(other))  # the same key types, another list
    good = listed.keyset.encode(_stamped(listed))
    for cursor in ("garbage!", "x" * 600, good[:-2], good[:-1] + ("A" if good[-1] != "A" else "B"), foreign):
        r = await hub.get(listed.path, params={"cursor": cursor}, headers=admin)
        assert r.status_code == 400, (cursor, r.status_code, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"].endswith("/invalid-cursor")
    assert (await hub.get(listed.path, params={"cursor": good}, headers=admin)).status_code == 200


def _stamped(listed: Listed) -> Any:
    """A row with every key column set (what the database fills in on insert)."""
    row = listed.make(0)
    for column in listed.keyset.columns:
        if getattr(row, column.key) is None:
            setattr(row, column.key, datetime.now(UTC))
    return row


@pytest.mark.parametrize("limit", [0, -1, MAX_LIMIT + 1, 2**64])
async def test_limit_is_bounded(hub, admin, limit):
    for listed in LISTS.values():
        r = await hub.get(listed.path, params={"limit": limit}, headers=admin)
        assert r.status_code == 422, (listed.path, r.text)
        assert r.json()["errors"][0]["loc"] == ["query", "limit"]


async def test_without_a_limit_a_page_holds_the_default_and_at_most_the_maximum(hub, admin, sessions):
    await add(sessions, *(_tenant(i) for i in range(MAX_LIMIT + 1)))
    page = (await hub.get("/api/v1/admin/tenants", headers=admin)).json()
    assert len(page["items"]) == DEFAULT_LIMIT and page["next_cursor"]
    page = (await hub.get("/api/v1/admin/tenants", params={"limit": MAX_LIMIT}, headers=admin)).json()
    assert len(page["items"]) == MAX_LIMIT and page["next_cursor"]


# --- filters -----------------------------------------------------------------------------------------------------


async def _ids(hub, admin, path: str, params: Any, field: str = "id") -> set[str]:
    r = await hub.get(path, params=params, headers=admin)
    assert r.status_code == 200, r.text
    return {i[field] for i in r.json()["items"]}


async def test_tenants_by_domain_exactly_or_with_their_subdomains(hub, admin, sessions):
    apex, sub, lookalike, other = await add(
        sessions,
        _tenant(0, domain="example.com", status="ACTIVE"),
        _tenant(1, domain="shop.example.com", staging=True),
        _tenant(2, domain="badexample.com", status="DECOMMISSIONED"),
        _tenant(3, domain="example.org", status="ACTIVE"),
    )
    path = "/api/v1/admin/tenants"

    async def ids(params: Any) -> set[str]:
        return await _ids(hub, admin, path, params, "tenant_id")

    assert await ids({"domain": "Shop.Example.com."}) == {str(sub.id)}  # normalised as everywhere
    assert await ids({"domain_suffix": "example.com"}) == {str(apex.id), str(sub.id)}  # not badexample.com
    assert await ids({"domain_suffix": "com"}) == {str(apex.id), str(sub.id), str(lookalike.id)}
    assert await ids([("status", "ACTIVE"), ("status", "DECOMMISSIONED")]) == {
        str(apex.id),
        str(lookalike.id),
        str(other.id),
    }
    assert await ids({"staging": "true"}) == {str(sub.id)}
    for bad in ({"domain": "not a domain"}, {"domain_suffix": "%.com"}, {"status": "GONE"}):
        assert (await hub.get(path, params=bad, headers=admin)).status_code == 422, bad


async def test_orders_by_one_or_several_statuses_and_by_domain(hub, admin, sessions):
    paid, failed, pending = await add(
        sessions,
        _order(0, status="PAYMENT_CONFIRMED", domain="a.example.com"),
        _order(1, status="FAILED", failed_stage="DNS", domain="b.example.com"),
        _order(2, domain="example.net"),
    )
    path = "/api/v1/admin/orders"
    assert await _ids(hub, admin, path, {"status": "FAILED"}) == {str(failed.id)}
    assert await _ids(hub, admin, path, [("status", "FAILED"), ("status", "PAYMENT_CONFIRMED")]) == {
        str(failed.id),
        str(paid.id),
    }
    assert await _ids(hub, admin, path, {"domain_suffix": "example.com"}) == {str(failed.id), str(paid.id)}
    assert await _ids(hub, admin, path, {"domain": "example.net"}) == {str(pending.id)}


async def test_other_lists_filter_by_several_states(hub, admin, sessions):
    queued, failed, _ = await add(
        sessions, _command(0, status="QUEUED"), _command(1, status="FAILED"), _command(2, status="SUCCEEDED")
    )
    statuses = [("status", "QUEUED"), ("status", "FAILED")]
    assert await _ids(hub, admin, LISTS["commands"].path, statuses) == {str(queued.id), str(failed.id)}

    hard, medium, _ = await add(sessions, _alert(0, severity="hard"), _alert(1), _alert(2, severity="soft"))
    severities = [("severity", "hard"), ("severity", "medium")]
    assert await _ids(hub, admin, "/api/v1/admin/alerts", [*severities, *LISTS["alerts"].params], "alert_id") == {
        str(hard.alert_id),
        str(medium.alert_id),
    }

    draining, retired = await add(sessions, _server(0, status="DRAINING", order_id=uuid.uuid4()), _server(1))
    both = [("status", "DRAINING"), ("status", "RETIRED")]
    assert await _ids(hub, admin, "/api/v1/admin/servers", both) == {str(draining.id), str(retired.id)}
    assert await _ids(hub, admin, "/api/v1/admin/servers", {"status": "DRAINING"}) == {str(draining.id)}

    aborted, done = await add(sessions, _rollout(0, status="ABORTED"), _rollout(1, component="secrets-proxy"))
    assert await _ids(hub, admin, "/api/v1/admin/rollouts", {"status": "ABORTED"}) == {str(aborted.id)}
    assert await _ids(hub, admin, "/api/v1/admin/rollouts", {"component": "secrets-proxy"}) == {str(done.id)}

    rejected, consumed = await add(sessions, _approval(0), _approval(1, status="CONSUMED"))
    assert await _ids(hub, admin, "/api/v1/admin/approvals", {"status": "CONSUMED"}) == {str(consumed.id)}
    assert rejected


async def test_bounded_lists_answer_in_one_page_of_the_same_shape(hub, admin):
    for path in ("/api/v1/admin/pools", "/api/v1/admin/pools/replenish"):
        page = (await hub.get(path, headers=admin)).json()
        assert set(page) == {"items", "next_cursor"} and page["next_cursor"] is None
