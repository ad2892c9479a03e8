"""Approvals on the hub: the Safety Wrapper asks, an operator decides, the wrapper uses it once for the exact call.
Also end to end: the wrapper's real HTTP client against the real hub."""

import uuid

import pytest
from sqlalchemy import text

from hub_testing.approvals import ADMIN, approval_body, args_hash, decide
from hub_testing.tenants import admin_token, enroll
from letsbe_hub.auth.scopes import Scope

BASE = "/api/v1/tenant/approvals"


async def test_request_decide_consume_once(hub, admin):
    wrapper = await enroll(hub, admin)
    h = args_hash("call-1")
    r = await hub.post(BASE, json=approval_body(h), headers=wrapper.headers)
    assert r.status_code == 201, r.text
    approval = r.json()
    assert approval["status"] == "PENDING" and approval["tenant_id"] == str(wrapper.tenant_id)

    # Not yet approved: cannot be used.
    r = await hub.post(f"{BASE}/{approval['id']}/consume", json={"args_hash": h}, headers=wrapper.headers)
    assert r.status_code == 409 and r.json()["type"].endswith("approval-not-approved")

    listed = (await hub.get(ADMIN, params={"status": "PENDING"}, headers=admin)).json()["items"]
    assert [a["id"] for a in listed] == [approval["id"]]
    r = await decide(hub, admin, approval["id"])
    assert r.status_code == 200 and r.json()["status"] == "APPROVED" and r.json()["decided_by"] == "test-admin"

    polled = (await hub.get(f"{BASE}/{approval['id']}", headers=wrapper.headers)).json()
    assert polled["status"] == "APPROVED"

    r = await hub.post(f"{BASE}/{approval['id']}/consume", json={"args_hash": h}, headers=wrapper.headers)
    assert r.status_code == 200 and r.json()["status"] == "CONSUMED"
    r = await hub.post(f"{BASE}/{approval['id']}/consume", json={"args_hash": h}, headers=wrapper.headers)
    assert r.status_code == 409 and r.json()["type"].endswith("approval-used")


async def test_an_approval_cannot_be_used_for_a_different_call(hub, admin):
    wrapper = await enroll(hub, admin)
    approval = (await hub.post(BASE, json=approval_body(args_hash("a")), headers=wrapper.headers)).json()
    await decide(hub, admin, approval["id"])
    r = await hub.post(f"{BASE}/{approval['id']}/consume", json={"args_hash": args_hash("b")}, headers=wrapper.headers)
    assert r.status_code == 403 and r.json()["type"].endswith("approval-mismatch")
    # Still usable for the right call afterwards.
    r = await hub.post(f"{BASE}/{approval['id']}/consume", json={"args_hash": args_hash("a")}, headers=wrapper.headers)
    assert r.status_code == 200


async def test_the_same_pending_call_gets_the_same_approval(hub, admin):
    wrapper = await enroll(hub, admin)
    first = await hub.post(BASE, json=approval_body(args_hash("same")), headers=wrapper.headers)
    again = await hub.post(BASE, json=approval_body(args_hash("same")), headers=wrapper.headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    other = await hub.post(BASE, json=approval_body(args_hash("other")), headers=wrapper.headers)
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]


async def test_expired_approvals_can_be_neither_decided_nor_used(hub, admin, sessions):
    wrapper = await enroll(hub, admin)
    h = args_hash("late")
    approval = (await hub.post(BASE, json=approval_body(h), headers=wrapper.headers)).json()
    await decide(hub, admin, approval["id"])
    async with sessions() as s, s.begin():
        await s.execute(text("UPDATE hub.approvals SET expires_at = now() - interval '1 second' WHERE id = :id"),
                        {"id": approval["id"]})
    r = await hub.post(f"{BASE}/{approval['id']}/consume", json={"args_hash": h}, headers=wrapper.headers)
    assert r.status_code == 409 and r.json()["type"].endswith("approval-expired")
    assert (await hub.get(f"{BASE}/{approval['id']}", headers=wrapper.headers)).json()["status"] == "EXPIRED"
    # A new request for the same call is possible once the old one expired.
    again = await hub.post(BASE, json=approval_body(h), headers=wrapper.headers)
    assert again.status_code == 201 and again.json()["id"] != approval["id"]


async def test_a_decision_is_final(hub, admin):
    wrapper = await enroll(hub, admin)
    approval = (await hub.post(BASE, json=approval_body(args_hash("x")), headers=wrapper.headers)).json()
    assert (await decide(hub, admin, approval["id"], "reject")).json()["status"] == "REJECTED"
    r = await decide(hub, admin, approval["id"], "approve")
    assert r.status_code == 409 and r.json()["status"] == 409 and r.json()["current_status"] == "REJECTED"
    assert (await decide(hub, admin, uuid.uuid4())).status_code == 404


async def test_a_tenant_sees_only_its_own_approvals(hub, admin):
    a = await enroll(hub, admin)
    b = await enroll(hub, admin)
    approval = (await hub.post(BASE, json=approval_body(args_hash("mine")), headers=a.headers)).json()
    await decide(hub, admin, approval["id"])
    assert (await hub.get(f"{BASE}/{approval['id']}", headers=b.headers)).status_code == 404
    r = await hub.post(f"{BASE}/{approval['id']}/consume", json={"args_hash": args_hash("mine")}, headers=b.headers)
    assert r.status_code == 404
    assert (await hub.get(f"{BASE}/{approval['id']}", headers=a.headers)).json()["status"] == "APPROVED"


async def test_only_the_safety_wrapper_asks(hub, admin):
    proxy = await enroll(hub, admin, agent="secrets-proxy")
    r = await hub.post(BASE, json=approval_body(args_hash("p")), headers=proxy.headers)
    assert r.status_code == 403


@pytest.mark.parametrize("bad", [{"args_hash": "short"}, {"ttl_seconds": 5}, {"risk_class": "PURPLE"},
                                 {"tool": "Ghost"}, {"extra": 1}])
async def test_malformed_requests_are_422(hub, admin, bad):
    wrapper = await enroll(hub, admin)
    r = await hub.post(BASE, json={**approval_body(args_hash("m")), **bad}, headers=wrapper.headers)
    assert r.status_code == 422


async def test_admin_routes_need_their_scopes(hub, admin, sessions):
    reader = {"Authorization": f"Bearer {await admin_token(sessions, [Scope.FLEET_READ])}"}
    nobody = {"Authorization": f"Bearer {await admin_token(sessions, [Scope.ORDERS_READ])}"}
    wrapper = await enroll(hub, admin)
    approval = (await hub.post(BASE, json=approval_body(args_hash("s")), headers=wrapper.headers)).json()
    assert (await hub.get(ADMIN, headers=reader)).status_code == 200
    assert (await hub.get(ADMIN, headers=nobody)).status_code == 403
    assert (await hub.get(ADMIN)).status_code == 401
    assert (await decide(hub, reader, approval["id"])).status_code == 403
    assert (await hub.get(f"{BASE}/{approval['id']}")).status_code == 401


async def test_many_requests_on_pooled_connections_all_insert(hub, admin):
    """asyncpg switches a prepared statement to a generic plan after five runs; an ON CONFLICT whose index predicate
    is a bound parameter then no longer matches the partial unique index, and the sixth request failed with 500."""
    wrapper = await enroll(hub, admin)
    for i in range(30):
        r = await hub.post(BASE, json=approval_body(args_hash(f"pooled-{i}")), headers=wrapper.headers)
        assert r.status_code == 201, (i, r.text)
    again = await hub.post(BASE, json=approval_body(args_hash("pooled-0")), headers=wrapper.headers)
    assert again.status_code in (200, 201) and again.json()["id"], again.text
