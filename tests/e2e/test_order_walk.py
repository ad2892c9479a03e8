"""A paid order walks from Stripe's webhook to a heartbeating tenant, across real processes."""

import asyncio
import json
import re
import signal

import httpx
from websockets.asyncio.client import connect

from letsbe_contracts import (
    AlertRaisedV1,
    DnsReadyV1,
    OrderCreatedV1,
    ProvisionedV1,
    ServerAllocatedV1,
    TenantHeartbeatV1,
    decode,
)
from letsbe_platform.testing import eventually
from letsbe_sandbox import openclaw

WALK = [
    "PENDING_PAYMENT",
    "PAYMENT_CONFIRMED",
    "AWAITING_SERVER",
    "SERVER_READY",
    "DNS_PENDING",
    "DNS_READY",
    "PROVISIONING",
    "FULFILLED",
]


async def test_paid_order_reaches_fulfilled_its_tenant_heartbeats_answers_and_raises_the_alert_when_it_stops(plane):
    async with httpx.AsyncClient(timeout=30) as client:
        created = await plane.order(client, "shop.example.com", ["nextcloud", "ghost"])
        order_id = created["id"]
        assert created["status"] == "PENDING_PAYMENT"
        await plane.pay(client, created["checkout_session_id"])

        order = await plane.wait_status(client, order_id, "FULFILLED")
        assert [t["to_status"] for t in order["history"]] == WALK

        # The four backbone events, each exactly once for this order, in the stream every consumer reads.
        for event in (OrderCreatedV1, ServerAllocatedV1, DnsReadyV1, ProvisionedV1):
            assert len(await plane.events(event, order_id)) == 1, event.TYPE

        # One overflow server, one DNS record set, one welcome email.
        assert plane.world.hetzner.creates == 1
        zone = plane.world.cloudflare.zone("shop.example.com")
        names = sorted((r["type"], r["name"]) for r in plane.world.cloudflare.records(zone.id))
        assert names == [  # root and wildcard, v4 and v6 (Hetzner servers have both), each once
            ("A", "*.shop.example.com"),
            ("A", "shop.example.com"),
            ("AAAA", "*.shop.example.com"),
            ("AAAA", "shop.example.com"),
        ]
        await eventually(lambda: plane.world.smtp.messages, "the welcome email", timeout=60, every=0.2)
        assert [m["To"] for m in plane.world.smtp.messages] == ["owner@shop.example.com"]
        # The email carries a one-time link to the tools' admin logins the provisioner generated, not the logins.
        body = plane.world.smtp.messages[0].get_content()
        link = re.search(r"(https?://\S+/api/v1/public/credentials/[A-Za-z0-9_-]{43})", body)
        assert link, body
        shown = await client.post(link.group(1))
        assert shown.status_code == 200, shown.text
        logins = {c["tool"]: c for c in shown.json()["credentials"]}
        assert set(logins) == {"nextcloud", "ghost"} and logins["ghost"]["login"] == "owner@shop.example.com"
        assert all(c["password"] not in body and len(c["password"]) >= 32 for c in logins.values())
        assert (await client.post(link.group(1))).status_code == 404

        # The SSE stream replays the whole run (state changes, ten steps, log lines) and ends at FULFILLED.
        seen: list[dict] = []
        async with client.stream(
            "GET", f"{plane.hub}/api/v1/admin/orders/{order_id}/events", headers=plane.headers
        ) as stream:
            assert stream.headers["x-letsbe-sandbox"] == "true"
            async for line in stream.aiter_lines():
                if line.startswith("data:"):
                    seen.append(json.loads(line[5:]))
        states = [e["to"] for e in seen if "to" in e]
        assert states == WALK
        finished = {e["step"] for e in seen if e.get("status") == "SUCCEEDED" and "name" in e}
        assert finished == set(range(1, 11))
        assert any("line" in e for e in seen)

        # The tenant's agents registered and heartbeat on the sandbox's 5 s interval.
        tenant = await plane.tenant(client, order_id)
        assert {a["agent"] for a in tenant["agents"]} == {"safety-wrapper", "secrets-proxy"}
        first = {a["agent"]: a["last_heartbeat_at"] for a in tenant["agents"]}

        async def beat_again() -> bool:
            now = {a["agent"]: a["last_heartbeat_at"] for a in (await plane.tenant(client, order_id))["agents"]}
            return all(now[k] and now[k] != first[k] for k in now)

        # Two beats 5 s apart; generous for a loaded machine.
        await eventually(beat_again, "both agents heartbeating again", timeout=60, every=0.2)
        # ... and the hub passes them on to the monitor as tenant-heartbeat events.
        beats = [decode(e) for e in await plane.events(TenantHeartbeatV1)]
        assert {b.agent for b in beats if str(b.tenant_id) == order_id} == {"safety-wrapper", "secrets-proxy"}, beats

        # The customer chats with the tenant's agent through the hub's relay: the Safety Wrapper the provisioner
        # rendered holds the tenant's end, and the sandbox's stand-in for OpenClaw's gateway answers.
        r = await client.post(
            f"{plane.hub}/api/v1/admin/tenants/{order_id}/customer-app-tokens",
            headers=plane.headers,
            json={"label": "phone"},
        )
        assert r.status_code == 201, r.text
        auth = {"Authorization": f"Bearer {r.json()['token']}"}
        url = plane.hub.replace("http://", "ws://") + "/api/v1/customer/ws"
        async with connect(url, additional_headers=auth) as ws:
            await ws.send(json.dumps({"type": "hello", "after": 0}))
            assert json.loads(await ws.recv())["type"] == "ready"
            await ws.send(json.dumps({"type": "message", "id": "q1", "text": "is my shop up?"}))
            frames = [json.loads(await asyncio.wait_for(ws.recv(), 60)) for _ in range(2)]
        accepted, answer = sorted(frames, key=lambda f: f["type"])
        assert (accepted["type"], answer["type"]) == ("accepted", "message")
        assert answer["reply_to"] == accepted["seq"] and answer["text"] == openclaw.answer("is my shop up?")
        async with connect(url, additional_headers=auth) as ws:  # resumed after the answer: nothing again
            await ws.send(json.dumps({"type": "hello", "after": answer["id"]}))
            assert json.loads(await ws.recv())["type"] == "ready"
            # Messages come in id order: the answer to a new question comes after any older one sent again.
            await ws.send(json.dumps({"type": "message", "id": "q2", "text": "and now?"}))
            frames = [json.loads(await asyncio.wait_for(ws.recv(), 60)) for _ in range(2)]
        again, second = sorted(frames, key=lambda f: f["type"])
        assert (again["type"], second["type"]) == ("accepted", "message"), "a message came twice"
        assert second["reply_to"] == again["seq"] and second["text"] == openclaw.answer("and now?")
        assert second["id"] > answer["id"]

        # The tenant's Safety Wrapper stops: the monitor raises the offline alert for this tenant.
        plane.world.vps_of_order(order_id).agents["safety-wrapper"].send_signal(signal.SIGTERM)

        async def stale_alert() -> bool:
            alerts = [decode(e) for e in await plane.events(AlertRaisedV1)]
            return any(a.rule == "heartbeat.stale" and str(a.tenant_id) == order_id for a in alerts)

        # 3 missed 5 s beats, the monitor's startup grace and its settle time: well under a minute.
        await eventually(stale_alert, "the heartbeat.stale alert", timeout=60, every=0.2)
