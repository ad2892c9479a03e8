"""rotate-credential for the tenant's AI-stack keys: the hub hands the command to the provisioner (an event through
its outbox), never to an agent, and moves it along as the provisioner reports; the command is the audit record."""

import uuid

from sqlalchemy import text

from hub_testing.tenants import enroll
from letsbe_contracts.events import TenantKeyRotationReportedV1
from letsbe_hub.commands.handlers import ON_ROTATION_REPORTED
from letsbe_platform.testing import eventually


async def _rotate(hub, admin, tenant_id, key="tools-token", **extra):
    body = {"type": "rotate-credential", "params": {"credential": key}} | extra
    return await hub.post(f"/api/v1/admin/tenants/{tenant_id}/commands", json=body, headers=admin)


async def _requests(sessions, command_id):
    async with sessions() as s:
        rows = await s.execute(
            text("SELECT event_id, envelope FROM hub.outbox WHERE subject = 'letsbe.tenant.key.rotation.requested.v1'")
        )
        return [r for r in rows if r.envelope["payload"]["command_id"] == str(command_id)]


async def test_a_key_rotation_is_handed_to_the_provisioner_once_and_no_agent_pulls_it(hub, admin, sessions):
    sw = await enroll(hub, admin)
    r = await _rotate(hub, admin, sw.tenant_id, idempotency_key="rotate-tools-1")
    assert r.status_code == 201, r.text
    cmd = r.json()
    assert (cmd["agent"], cmd["status"], cmd["created_by"]) == ("provisioner", "QUEUED", "token:test-admin")
    again = await _rotate(hub, admin, sw.tenant_id, idempotency_key="rotate-tools-1")
    assert again.json()["id"] == cmd["id"]
    [request] = await _requests(sessions, cmd["id"])
    assert request.event_id == uuid.UUID(cmd["id"])  # one request per command, whatever the retries
    payload = request.envelope["payload"]
    assert (payload["key"], payload["tenant_id"], payload["requested_by"]) == (
        "tools-token", str(sw.tenant_id), "token:test-admin"
    )
    assert (await hub.get("/api/v1/tenant/commands", headers=sw.headers)).json() == {"commands": []}


async def test_a_key_rotation_cannot_go_to_an_agent_or_be_cancelled(hub, admin, sessions):
    sw = await enroll(hub, admin)
    r = await _rotate(hub, admin, sw.tenant_id, "secrets-key", agent="safety-wrapper")
    assert r.status_code == 422 and "provisioner" in r.json()["detail"]
    assert (await _rotate(hub, admin, sw.tenant_id, "gateway-token")).status_code == 422
    async with sessions() as s:
        assert (await s.execute(text("SELECT count(*) FROM hub.commands"))).scalar() == 0
    cmd = (await _rotate(hub, admin, sw.tenant_id, "sentinel-key")).json()
    r = await hub.post(f"/api/v1/admin/commands/{cmd['id']}/cancel", headers=admin)
    assert r.status_code == 409 and r.json()["current_status"] == "QUEUED"


async def test_the_provisioners_reports_move_the_command_and_a_late_duplicate_changes_nothing(
    hub, admin, bus, sessions
):
    sw = await enroll(hub, admin)
    cmd = (await _rotate(hub, admin, sw.tenant_id, "secrets-key")).json()

    def report(status, **extra):
        return TenantKeyRotationReportedV1(
            command_id=cmd["id"], tenant_id=sw.tenant_id, key="secrets-key", status=status, **extra
        )

    async def view():
        return (await hub.get(f"/api/v1/admin/commands/{cmd['id']}", headers=admin)).json()

    await bus.publish(report("RUNNING"), correlation_id=sw.tenant_id)
    await eventually(lambda: _status(view, "RUNNING"))
    done = report("SUCCEEDED", recreated=("safety-wrapper", "secrets-proxy"))
    await bus.publish(done, correlation_id=sw.tenant_id)
    final = await eventually(lambda: _status(view, "SUCCEEDED"))
    assert final["result"] == {"credential": "secrets-key", "recreated": ["safety-wrapper", "secrets-proxy"]}
    # A late FAILED for the same command (another event) cannot undo what happened.
    late = [
        await bus.publish(report("FAILED", error="late"), correlation_id=sw.tenant_id),
        await bus.publish(done, correlation_id=sw.tenant_id, event_id=uuid.uuid4()),
    ]

    async def handled():
        async with sessions() as s:
            n = await s.execute(
                text("SELECT count(*) FROM hub.inbox WHERE consumer = :c AND event_id = ANY(:ids)"),
                {"c": ON_ROTATION_REPORTED, "ids": [e.id for e in late]},
            )
            return n.scalar() == len(late)

    await eventually(handled)
    final = await view()
    assert final["status"] == "SUCCEEDED" and final["error"] is None
    # The tenant's history: who asked, and each step the provisioner took.
    assert [(t["from_status"], t["to_status"], t["actor"]) for t in final["transitions"]] == [
        (None, "QUEUED", "token:test-admin"),
        ("QUEUED", "DELIVERED", "provisioner"),
        ("DELIVERED", "RUNNING", "provisioner"),
        ("RUNNING", "SUCCEEDED", "provisioner"),
    ]
    listed = (await hub.get(f"/api/v1/admin/tenants/{sw.tenant_id}/commands", headers=admin)).json()
    assert [c["id"] for c in listed["items"]] == [cmd["id"]]


async def test_a_failed_rotation_says_why(hub, admin, bus):
    sw = await enroll(hub, admin)
    cmd = (await _rotate(hub, admin, sw.tenant_id)).json()
    reason = "the tenant is not provisioned yet (its job is RUNNING); rotate once it is"
    await bus.publish(
        TenantKeyRotationReportedV1(
            command_id=cmd["id"], tenant_id=sw.tenant_id, key="tools-token", status="FAILED", error=reason
        ),
        correlation_id=sw.tenant_id,
    )

    async def failed():
        v = (await hub.get(f"/api/v1/admin/commands/{cmd['id']}", headers=admin)).json()
        return v if v["status"] == "FAILED" else None

    assert (await eventually(failed))["error"] == reason


async def _status(view, status):
    v = await view()
    return v if v["status"] == status else None
