"""POST /api/v1/tools/execute end to end: policy, approvals, secrets, limits, kill switch, audit."""

import uuid

import pytest

from letsbe_contracts.approvals import ApprovalStatus
from letsbe_safety_wrapper.tools import commands
from letsbe_safety_wrapper.tools.audit import verify
from letsbe_safety_wrapper.tools.policy import call_hash

SECRET = "ghost-admin-key-0123456789abcdef"


def _audit(w) -> list[dict]:
    import json

    return [json.loads(line) for line in (w.settings.tools_dir / "audit.jsonl").read_text().splitlines()]


async def test_green_call_runs_with_the_bound_secret_and_never_returns_it(wrapper):
    r = await wrapper.call("ghost", "posts.list", {"limit": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "executed" and body["risk_class"] == "GREEN"
    assert body["result"]["status_code"] == 200
    [seen] = wrapper.receiver.requests
    assert seen["method"] == "GET" and seen["path"] == "/ghost/api/admin/posts/"
    assert seen["query"] == {"limit": "5"}
    assert seen["headers"]["authorization"] == f"Ghost {SECRET}"  # substituted at execution
    assert SECRET not in r.text


async def test_a_tool_that_echoes_secrets_back_has_them_scrubbed_from_result_and_audit(wrapper):
    r = await wrapper.call("ghost", "echo", {"config": "password=SECRET_REF(db_password)"})
    assert r.status_code == 200, r.text
    assert wrapper.receiver.requests[0]["body"] == {"config": "password=Sup3r-S3cret-DB-pass!"}
    assert r.json()["result"]["body"] == {"echo": {"config": "password=SECRET_REF(db_password)"},
                                          "auth": None}
    audit_text = (wrapper.settings.tools_dir / "audit.jsonl").read_text()
    assert "Sup3r-S3cret-DB-pass!" not in audit_text and "Sup3r-S3cret-DB-pass!" not in r.text


async def test_a_secret_not_bound_to_the_tool_is_refused_before_anything_runs(wrapper):
    r = await wrapper.call("ghost", "echo", {"x": "SECRET_REF(nextcloud_pw)"})
    assert r.status_code == 403
    assert r.json()["type"].endswith("tools-secret-not-bound")
    assert "nc-password" not in r.text
    assert wrapper.receiver.requests == []
    assert _audit(wrapper)[-1]["outcome"] == "denied"


async def test_unknown_secret_reference_is_422(wrapper):
    r = await wrapper.call("ghost", "echo", {"x": "SECRET_REF(missing)"})
    assert r.status_code == 422 and r.json()["type"].endswith("tools-unknown-secret")


async def test_gated_call_waits_for_approval_then_runs_once(wrapper):
    args = {"id": "42"}
    r = await wrapper.call("ghost", "posts.delete", args)
    assert r.status_code == 202, r.text
    pending = r.json()
    assert pending["status"] == "pending_approval" and pending["risk_class"] == "CRITICAL_RED"
    approval_id = pending["approval_id"]
    [asked] = wrapper.approvals.requests
    assert asked.args_hash == call_hash("ghost", "posts.delete", args) == pending["args_hash"]
    assert asked.risk_class == "CRITICAL_RED" and asked.ttl_seconds == 300

    # Not decided yet: still pending, nothing ran.
    r = await wrapper.call("ghost", "posts.delete", args, approval_id=approval_id)
    assert r.status_code == 202 and wrapper.receiver.requests == []

    wrapper.approvals.decide(uuid.UUID(approval_id), ApprovalStatus.APPROVED, by="ops@letsbe")
    r = await wrapper.call("ghost", "posts.delete", args, approval_id=approval_id)
    assert r.status_code == 200, r.text
    assert [q["method"] for q in wrapper.receiver.requests] == ["DELETE"]
    assert wrapper.receiver.requests[0]["path"] == "/ghost/api/admin/posts/42/"
    executed = _audit(wrapper)[-1]
    assert executed["outcome"] == "executed" and executed["approver"] == "ops@letsbe"

    # Replay: the same approval again is refused, and the tool is not called a second time.
    r = await wrapper.call("ghost", "posts.delete", args, approval_id=approval_id)
    assert r.status_code == 409 and r.json()["type"].endswith("tools-approval-used")
    assert len(wrapper.receiver.requests) == 1


async def test_an_approval_cannot_be_used_for_different_arguments(wrapper):
    r = await wrapper.call("ghost", "posts.delete", {"id": "1"})
    approval_id = r.json()["approval_id"]
    wrapper.approvals.decide(uuid.UUID(approval_id), ApprovalStatus.APPROVED)
    for other in ({"id": "2"}, {"id": "1", "extra": True}, {"id": 1}):
        r = await wrapper.call("ghost", "posts.delete", other, approval_id=approval_id)
        assert r.status_code == 403 and r.json()["type"].endswith("tools-approval-mismatch"), other
    r = await wrapper.call("ghost", "posts.publish", {"id": "1"}, approval_id=approval_id)  # other action
    assert r.status_code == 403
    assert wrapper.receiver.requests == []
    # The right call still works once after those refusals.
    r = await wrapper.call("ghost", "posts.delete", {"id": "1"}, approval_id=approval_id)
    assert r.status_code == 200


async def test_replay_is_refused_even_if_the_hub_forgets_it_was_consumed(wrapper):
    r = await wrapper.call("ghost", "posts.delete", {"id": "7"})
    approval_id = uuid.UUID(r.json()["approval_id"])
    wrapper.approvals.decide(approval_id, ApprovalStatus.APPROVED)
    assert (await wrapper.call("ghost", "posts.delete", {"id": "7"}, approval_id=str(approval_id))).status_code == 200
    wrapper.approvals.decide(approval_id, ApprovalStatus.APPROVED)  # a misbehaving hub re-approves it
    r = await wrapper.call("ghost", "posts.delete", {"id": "7"}, approval_id=str(approval_id))
    assert r.status_code == 409 and len(wrapper.receiver.requests) == 1


@pytest.mark.parametrize(
    ("fate", "status", "type_suffix"),
    [("reject", 403, "tools-approval-rejected"), ("expire", 409, "tools-approval-expired")],
)
async def test_rejected_or_expired_approvals_do_not_run(wrapper, fate, status, type_suffix):
    r = await wrapper.call("ghost", "posts.delete", {"id": "9"})
    approval_id = uuid.UUID(r.json()["approval_id"])
    if fate == "reject":
        wrapper.approvals.decide(approval_id, ApprovalStatus.REJECTED)
    else:
        wrapper.approvals.decide(approval_id, ApprovalStatus.APPROVED)
        wrapper.approvals.expire(approval_id)
    r = await wrapper.call("ghost", "posts.delete", {"id": "9"}, approval_id=str(approval_id))
    assert r.status_code == status and r.json()["type"].endswith(type_suffix)
    assert wrapper.receiver.requests == []


async def test_an_unknown_approval_id_is_404(wrapper):
    r = await wrapper.call("ghost", "posts.delete", {"id": "9"}, approval_id=str(uuid.uuid4()))
    assert r.status_code == 404


async def test_repeating_a_gated_call_reuses_the_pending_request(wrapper):
    a = (await wrapper.call("ghost", "posts.delete", {"id": "5"})).json()["approval_id"]
    b = (await wrapper.call("ghost", "posts.delete", {"id": "5"})).json()["approval_id"]
    assert a == b and len(wrapper.approvals.items) == 1


async def test_unknown_calls_are_gated_and_cannot_run_even_when_approved(wrapper):
    r = await wrapper.call("ghost", "settings.wipe", {})
    assert r.status_code == 202 and r.json()["risk_class"] == "RED"
    approval_id = uuid.UUID(r.json()["approval_id"])
    wrapper.approvals.decide(approval_id, ApprovalStatus.APPROVED)
    r = await wrapper.call("ghost", "settings.wipe", {}, approval_id=str(approval_id))
    assert r.status_code == 422 and r.json()["type"].endswith("tools-no-executor")
    assert wrapper.receiver.requests == []


@pytest.mark.parametrize(
    ("level", "action", "expected_status"),
    [
        (1, "posts.update", 202), (2, "posts.update", 200), (3, "posts.update", 200),
        (1, "posts.publish", 202), (2, "posts.publish", 202), (3, "posts.publish", 200),
        (3, "posts.delete", 202),
    ],
)
async def test_set_autonomy_command_changes_what_runs(wrapper, level, action, expected_status):
    result = await commands.set_autonomy(wrapper.tools, {"level": level})
    assert result == {"autonomy_level": level}
    r = await wrapper.call("ghost", action, {"id": "1"})
    assert r.status_code == expected_status, r.text


async def test_kill_switch_stops_every_call_until_released(wrapper):
    await commands.kill_switch(wrapper.tools, {"engaged": True, "reason": "incident 12"})
    r = await wrapper.call("ghost", "posts.list")
    assert r.status_code == 423 and r.json()["reason"] == "incident 12"
    assert wrapper.receiver.requests == []
    status = (await wrapper.client.get("/api/v1/tools")).json()
    assert status["kill_switch"] is True
    await commands.kill_switch(wrapper.tools, {"engaged": False})
    assert (await wrapper.call("ghost", "posts.list")).status_code == 200


async def test_kill_switch_and_autonomy_survive_a_restart(wrapper):
    from letsbe_safety_wrapper.tools.state import StateFile

    await commands.kill_switch(wrapper.tools, {"engaged": True})
    await commands.set_autonomy(wrapper.tools, {"level": 1})
    state = StateFile(wrapper.settings.tools_dir / "state.json", 2).state
    assert state.kill_switch is True and state.autonomy_level == 1


async def test_bad_command_params_are_refused():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        await commands.kill_switch(None, {"engaged": "maybe"})  # type: ignore[arg-type]


async def test_rate_limit_per_tool(wrapper):
    codes = [(await wrapper.call("listmonk", "campaigns.list", {"page": i})).status_code for i in range(4)]
    assert codes == [200, 200, 200, 429]


async def test_loop_limit_stops_the_same_call_repeated(wrapper):
    codes = [(await wrapper.call("listmonk", "campaigns.list", {"page": 1})).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    last = (await wrapper.call("listmonk", "campaigns.list", {"page": 1})).json()
    assert last["type"].endswith("tools-loop-detected")


async def test_path_arguments_cannot_escape_the_route(wrapper):
    r = await wrapper.call("nextcloud", "files.read", {"path": "../../etc/passwd"})
    assert r.status_code == 422 and wrapper.receiver.requests == []


async def test_calls_need_the_tools_token(wrapper):
    r = await wrapper.client.post("/api/v1/tools/execute", json={"tool": "ghost", "action": "posts.list"},
                                  headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"


async def test_malformed_calls_are_422_and_audited_as_rejected(wrapper):
    r = await wrapper.client.post("/api/v1/tools/execute", json={"tool": "Ghost!", "action": "x", "args": []})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert {tuple(e["loc"]) for e in r.json()["errors"]} == {("tool",), ("args",)}
    [entry] = _audit(wrapper)
    assert entry["outcome"] == "rejected" and entry["error"] == "tools-malformed-call"


async def test_every_decision_lands_in_a_verifiable_audit_chain(wrapper):
    await wrapper.call("ghost", "posts.list")
    pending = (await wrapper.call("ghost", "posts.delete", {"id": "3"})).json()
    await wrapper.call("ghost", "echo", {"x": "SECRET_REF(nextcloud_pw)"})
    await commands.kill_switch(wrapper.tools, {"engaged": True})
    await wrapper.call("ghost", "posts.list")
    entries = _audit(wrapper)
    assert [(e.get("outcome") or e["event"]) for e in entries] == [
        "executed", "pending_approval", "denied", "kill_switch", "denied"]
    assert entries[1]["approval_id"] == pending["approval_id"]
    assert entries[1]["risk_class"] == "CRITICAL_RED" and entries[1]["decision"] == "GATE_FOR_APPROVAL"
    assert verify(wrapper.settings.tools_dir / "audit.jsonl").ok


async def test_status_lists_actions_with_their_current_decision(wrapper):
    status = (await wrapper.client.get("/api/v1/tools")).json()
    by_action = {(a["tool"], a["action"]): a["decision"] for a in status["actions"]}
    assert by_action[("ghost", "posts.update")] == "EXECUTE"
    assert by_action[("ghost", "posts.delete")] == "GATE_FOR_APPROVAL"
    secret_slots = {(a["tool"], a["action"]): a["secret_args"] for a in status["actions"]}
    assert secret_slots[("ghost", "echo")] == ["config", "x"] and secret_slots[("ghost", "posts.list")] == []
    assert status["autonomy_level"] == 2 and status["autonomy_name"] == "balanced"
