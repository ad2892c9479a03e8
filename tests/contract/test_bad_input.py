"""Input that used to reach a 500 (or a wrong answer): each case here was one. Bad input is a clear 4xx
problem+json and changes nothing."""

from __future__ import annotations

import importlib
import typing
import uuid

import pytest
from fastapi.routing import APIRoute
from pydantic import BaseModel
from sqlalchemy import text

from hub_testing.orders import order_body
from hub_testing.tenants import enroll
from letsbe_contracts.validation import RequestModel

SERVICE_APPS = [
    "letsbe_hub.app",
    "letsbe_dns.app",
    "letsbe_provisioner.app",
    "letsbe_monitor.app",
    "letsbe_safety_wrapper.app",
    "letsbe_secrets_proxy.app",
]


def _models(annotation: typing.Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def test_every_request_body_of_every_service_rejects_control_characters():
    bodies = {}
    for module in SERVICE_APPS:
        for router in importlib.import_module(module).ROUTERS:
            for route in router.routes:
                if isinstance(route, APIRoute) and route.body_field is not None:
                    for model in _models(route.body_field.field_info.annotation):
                        bodies[f"{module} {route.path} {model.__name__}"] = model
    assert len(bodies) > 20
    not_checked = [where for where, model in bodies.items() if not issubclass(model, RequestModel)]
    assert not_checked == []


def _problem(r, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    return r.json()


@pytest.mark.parametrize("field", ["customer_name", "domain", "customer_email"])
async def test_a_nul_in_an_order_field_is_422_and_creates_nothing(hub, admin, sessions, field):
    body = order_body()
    body[field] = body[field][:3] + "\x00" + body[field][3:]
    r = await hub.post("/api/v1/admin/orders", json=body, headers=admin)
    assert _problem(r, 422)["errors"][0]["loc"][:2] == ["body", field]
    async with sessions() as s:
        assert (await s.execute(text("SELECT count(*) FROM hub.orders"))).scalar_one() == 0


async def test_newlines_and_tabs_stay_allowed_in_free_text(hub, admin):
    r = await hub.post("/api/v1/admin/orders", json=order_body(customer_name="Acme\tGmbH"), headers=admin)
    assert r.status_code == 201, r.text


def _list_routes() -> list[str]:
    """Every list route of the hub: the operations that take ?limit= and ?cursor=."""
    doc = importlib.import_module("letsbe_hub.app").create_app().openapi()
    return sorted(
        path
        for path, item in doc["paths"].items()
        for op in item.values()
        if {"limit", "cursor"} <= {p["name"] for p in op.get("parameters", [])}
    )


@pytest.mark.parametrize("path", _list_routes())
async def test_list_paging_input_is_bounded_and_a_bad_cursor_is_400_on_every_list(hub, admin, path):
    url = path.format(tenant_id=uuid.uuid4(), rollout_id=uuid.uuid4())
    for limit in (2**64, 0, 201):
        r = await hub.get(url, params={"limit": limit}, headers=admin)
        assert _problem(r, 422)["errors"][0]["loc"] == ["query", "limit"]
    for cursor in ("x" * 4_000, "\x00", "AAAA"):
        r = await hub.get(url, params={"cursor": cursor}, headers=admin)
        if r.status_code == 404:  # the rollout of a rollout's targets is looked up first
            continue
        assert _problem(r, 400)["type"].endswith("/invalid-cursor")


@pytest.mark.parametrize("last_event_id", ["abc", "99999999999999999999", "-1"])
async def test_a_bad_last_event_id_is_422_on_every_event_stream(hub, admin, last_event_id):
    order = await hub.post("/api/v1/admin/orders", json=order_body(), headers=admin)
    assert order.status_code == 201, order.text
    for path in (f"/api/v1/admin/orders/{order.json()['id']}/events", f"/api/v1/admin/rollouts/{uuid.uuid4()}/events"):
        r = await hub.get(path, headers={**admin, "Last-Event-ID": last_event_id})
        assert r.status_code == 422, (path, r.status_code, r.text)
        assert r.headers["content-type"] == "application/problem+json"


async def test_the_heartbeat_checks_the_credential_before_the_body(hub, admin):
    stranger = {"Authorization": "Bearer lba_not_a_key_of_anyone"}
    bad_body = {"seq": "not a number"}
    r = await hub.post("/api/v1/tenant/heartbeat", json=bad_body, headers=stranger)
    assert _problem(r, 401).get("re_enrol") is True
    # no credential at all: refused before the body is even read, whatever its size
    r = await hub.post("/api/v1/tenant/heartbeat", content=b"x" * 200_000)
    _problem(r, 401)
    # a known agent with a bad body still learns what is wrong with it
    a = await enroll(hub, admin)
    r = await hub.post("/api/v1/tenant/heartbeat", json=bad_body, headers=a.headers)
    _problem(r, 422)


async def test_an_anonymous_oversized_post_is_413_before_it_is_buffered(hub):
    r = await hub.post("/api/v1/public/calculate", content=b"{" + b" " * (2 * 1024 * 1024) + b"}")
    body = _problem(r, 413)
    assert body["type"].endswith("/too-large")
