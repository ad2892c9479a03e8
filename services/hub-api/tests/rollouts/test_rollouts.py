"""Fleet rollouts: cohorts, gates, soak, approval, abort, never downgrade (agents answer over the real API)."""

import pytest
from sqlalchemy import text

from hub_testing.tenants import FakeFleet, enroll, fast_hub_settings
from letsbe_platform.testing import eventually

IMAGE = "registry.letsbe.biz/letsbe/openclaw"
DIGEST = "sha256:" + "e" * 64


@pytest.fixture
def hub_settings(database_url, nats_url, bus_namespace):
    # After a soak the rollout pauses if an updated tenant missed 3 heartbeat intervals. The fake agents beat every
    # 0.1 s, but on a busy machine their loop can stall for seconds: an interval no stall reaches keeps the outcome
    # about the updates, not about the scheduler.
    return fast_hub_settings(database_url, nats_url, bus_namespace, heartbeat_interval_seconds=3600)


def stages(soak=0, **overrides):
    s = [
        {"name": "staging", "staging": True, "soak_seconds": soak},
        {"name": "canary-5", "percent": 5, "soak_seconds": soak},
        {"name": "wide-25", "percent": 25, "soak_seconds": soak, "max_failure_ratio": 0.5},
        {"name": "all-100", "percent": 100, "requires_approval": True, "max_failure_ratio": 0.5},
    ]
    for i, o in overrides.items():
        s[int(i[1:])] |= o
    return s


async def _fleet(hub, admin, n, staging=1):
    agents = [await enroll(hub, admin) for _ in range(n)]
    for a in agents[:staging]:
        r = await hub.patch(f"/api/v1/admin/tenants/{a.tenant_id}", json={"staging": True}, headers=admin)
        assert r.status_code == 200
    return agents


async def _create(hub, admin, **body):
    body = {"component": "openclaw", "image": IMAGE, "digest": DIGEST, "version": "2.0.0", "stages": stages()} | body
    return await hub.post("/api/v1/admin/rollouts", json=body, headers=admin)


async def _wait_status(hub, admin, rid, wanted, timeout=20.0):
    last = {}

    async def reached():
        last.update((await hub.get(f"/api/v1/admin/rollouts/{rid}", headers=admin)).json())
        return dict(last) if last["status"] in wanted else None

    try:
        return await eventually(reached, f"rollout {rid} in {wanted}", timeout=timeout, every=0.1)
    except AssertionError as e:
        raise AssertionError(f"{e}; last seen: {last}") from None


async def _targets(hub, admin, rid):
    page = (await hub.get(f"/api/v1/admin/rollouts/{rid}/targets", params={"limit": 200}, headers=admin)).json()
    assert page["next_cursor"] is None  # every target in one page
    return page["items"]


async def test_cohorts_are_stable_newest_first_with_at_least_one_tenant_per_stage(hub, admin, sessions):
    agents = await _fleet(hub, admin, 11)  # 1 staging + 10
    async with sessions() as s, s.begin():  # one tenant already runs a newer version: never downgraded
        await s.execute(
            text("INSERT INTO hub.tenant_components (tenant_id, component, version) VALUES (:t, 'openclaw', '3.0.0')"),
            {"t": agents[5].tenant_id},
        )
    r = await _create(hub, admin)
    assert r.status_code == 201, r.text
    view = r.json()
    assert [s["targets"] for s in view["stages"]] == [1, 1, 2, 6] and view["skipped"] == 1
    targets = await _targets(hub, admin, view["id"])
    by_stage = {}
    for t in targets:
        by_stage.setdefault(t["stage"], []).append(t["tenant_id"])
    newest_first = [str(a.tenant_id) for a in reversed(agents[1:]) if a is not agents[5]]
    assert by_stage[0] == [str(agents[0].tenant_id)]
    assert by_stage[1] + by_stage[2] + by_stage[3] == newest_first
    assert by_stage[-1] == [str(agents[5].tenant_id)]


async def test_rollout_needs_a_staging_tenant_and_one_at_a_time_per_component(hub, admin):
    await _fleet(hub, admin, 2, staging=0)
    r = await _create(hub, admin)
    assert r.status_code == 409 and "staging" in r.json()["detail"]
    no_staging = [{"name": "all", "percent": 100}]
    assert (await _create(hub, admin, stages=no_staging)).status_code == 201
    assert (await _create(hub, admin, stages=no_staging)).status_code == 409
    bad = await _create(hub, admin, stages=[{"name": "half", "percent": 50}])
    assert bad.status_code == 422


async def test_rollout_goes_stage_by_stage_within_concurrency_and_waits_for_approval_before_100(hub, admin):
    agents = await _fleet(hub, admin, 9)
    ok = lambda _t: {"status": "SUCCEEDED", "result": {"digest": DIGEST}}  # noqa: E731
    with FakeFleet(hub, agents, ok) as fleet:
        rid = (await _create(hub, admin, concurrency=2)).json()["id"]
        v = await _wait_status(hub, admin, rid, {"AWAITING_APPROVAL"})
        assert v["stage"] == "all-100"
        assert len(fleet.updated) == 1 + 1 + 1  # staging, 5 % (1 of 8), 25 % (2 of 8, cumulative)
        assert (await hub.post(f"/api/v1/admin/rollouts/{rid}/approve", headers=admin)).status_code == 200
        v = await _wait_status(hub, admin, rid, {"COMPLETED"})
    assert fleet.max_in_flight <= 2
    assert sorted(map(str, fleet.updated)) == sorted(str(a.tenant_id) for a in agents)
    assert all(t["status"] == "SUCCEEDED" for t in await _targets(hub, admin, rid))
    tenant = (await hub.get(f"/api/v1/admin/tenants/{agents[3].tenant_id}", headers=admin)).json()
    assert {"component": "openclaw", "version": "2.0.0", "digest": DIGEST} | {"updated_at": None} == {
        **next(c for c in tenant["components"] if c["component"] == "openclaw"),
        "updated_at": None,
    }
    # a second rollout to the same version finds nothing to do: no downgrade, no repeat
    again = (await _create(hub, admin)).json()
    assert again["skipped"] == 9


async def test_a_failed_rollback_aborts_and_cancels_what_is_queued(hub, admin, sessions):
    agents = await _fleet(hub, admin, 6)

    def outcome(tenant_id):
        if tenant_id == agents[0].tenant_id:
            return {"status": "SUCCEEDED"}
        return {"status": "FAILED", "error": "unhealthy; rollback failed: exited", "result": {"rollback_failed": True}}

    with FakeFleet(hub, agents, outcome):
        rid = (await _create(hub, admin, stages=stages(s2={"max_failure_ratio": 1.0}))).json()["id"]
        v = await _wait_status(hub, admin, rid, {"ABORTED"})
    assert "rollback failed" in v["reason"]
    statuses = {t["tenant_id"]: t["status"] for t in await _targets(hub, admin, rid)}
    assert statuses[str(agents[0].tenant_id)] == "SUCCEEDED"
    assert sorted(statuses.values()).count("ROLLBACK_FAILED") == 1
    assert sorted(statuses.values()).count("CANCELLED") == 4  # later stages never started
    async with sessions() as s:
        open_cmds = (
            await s.execute(text("SELECT count(*) FROM hub.commands WHERE status IN ('QUEUED', 'DELIVERED')"))
        ).scalar()
    assert open_cmds == 0


async def test_failures_above_the_stage_limit_abort_and_optionally_roll_the_stage_back(hub, admin, sessions):
    agents = await _fleet(hub, admin, 3, staging=2)
    good, bad = agents[1], agents[0]  # newest first: the good one is updated first (concurrency 1)
    old_digest = "sha256:" + "1" * 64
    async with sessions() as s, s.begin():
        await s.execute(
            text(
                "INSERT INTO hub.tenant_components (tenant_id, component, version, digest) "
                "VALUES (:t, 'openclaw', '1.0.0', :d)"
            ),
            {"t": good.tenant_id, "d": old_digest},
        )

    def outcome(tenant_id):
        if tenant_id == bad.tenant_id:
            return {"status": "ROLLED_BACK", "error": "health check failed"}
        return {"status": "SUCCEEDED"}

    with FakeFleet(hub, agents, outcome):
        rid = (await _create(hub, admin, rollback_on_abort=True, concurrency=1)).json()["id"]
        v = await _wait_status(hub, admin, rid, {"ABORTED"})
    assert "1 of 2 updates failed" in v["reason"]
    statuses = {t["tenant_id"]: t["status"] for t in await _targets(hub, admin, rid)}
    assert statuses[str(bad.tenant_id)] == "ROLLED_BACK"
    assert statuses[str(good.tenant_id)] == "REVERTED"  # the stage's updated tenant goes back
    revert = (await hub.get(f"/api/v1/admin/tenants/{good.tenant_id}/commands", headers=admin)).json()["items"][0]
    assert revert["idempotency_key"] == f"rollout:{rid}:revert:{good.tenant_id}"
    assert revert["params"]["digest"] == old_digest and revert["params"]["version"] == "1.0.0"


async def test_no_result_is_inconclusive_pauses_and_resume_tries_again(hub, admin, sessions):
    agents = await _fleet(hub, admin, 2)
    answers = {"mode": "silent"}

    def outcome(_t):
        return None if answers["mode"] == "silent" else {"status": "SUCCEEDED"}

    with FakeFleet(hub, agents, outcome):
        rid = (await _create(hub, admin)).json()["id"]

        async def running():
            async with sessions() as s:
                return await s.scalar(text("SELECT count(*) FROM hub.commands WHERE status = 'RUNNING'"))

        await eventually(running, "the staging tenant's agent runs the update")
        async with sessions() as s, s.begin():  # the deadline passes without a result
            await s.execute(
                text("UPDATE hub.commands SET deadline_at = now() - interval '1 second' WHERE status = 'RUNNING'")
            )
        v = await _wait_status(hub, admin, rid, {"PAUSED"})
        assert "inconclusive" in v["reason"]
        answers["mode"] = "ok"
        assert (await hub.post(f"/api/v1/admin/rollouts/{rid}/resume", headers=admin)).json()["status"] == "RUNNING"
        v = await _wait_status(hub, admin, rid, {"COMPLETED", "AWAITING_APPROVAL"})
    assert v["stages"][0]["counts"] == {"SUCCEEDED": 1}


async def test_operator_pause_stops_dispatching_and_abort_ends_it(hub, admin):
    agents = await _fleet(hub, admin, 3)
    rid = (await _create(hub, admin)).json()["id"]
    assert (await hub.post(f"/api/v1/admin/rollouts/{rid}/pause", headers=admin)).json()["status"] == "PAUSED"
    assert (await hub.post(f"/api/v1/admin/rollouts/{rid}/pause", headers=admin)).status_code == 409
    assert (await hub.post(f"/api/v1/admin/rollouts/{rid}/approve", headers=admin)).status_code == 409
    r = await hub.post(f"/api/v1/admin/rollouts/{rid}/abort", json={"reason": "wrong image"}, headers=admin)
    assert r.json()["status"] == "ABORTED" and r.json()["reason"].startswith("wrong image")
    del agents


async def test_rollout_progress_streams_as_server_sent_events(hub, admin):
    agents = await _fleet(hub, admin, 1)
    ok = lambda _t: {"status": "SUCCEEDED"}  # noqa: E731
    with FakeFleet(hub, agents, ok):
        rid = (
            await _create(hub, admin, stages=[{"name": "staging", "staging": True}, {"name": "all", "percent": 100}])
        ).json()["id"]
        kinds = []
        async with hub.stream("GET", f"/api/v1/admin/rollouts/{rid}/events", headers=admin, timeout=20) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            async for line in r.aiter_lines():
                if line.startswith("event:"):
                    kinds.append(line.split(":", 1)[1].strip())
                    if kinds[-1] == "end":
                        break
    assert kinds[0] == "rollout-event" and "rollout" in kinds and kinds[-1] == "end"


@pytest.mark.parametrize(
    ("candidate", "current", "expected"),
    [("2.0.0", "1.9.9", True), ("2.0.0", "2.0.0", False), ("1.10.0", "1.9.0", True), ("2.0.0", None, True)],
)
def test_version_ordering_for_never_downgrade(candidate, current, expected):
    from letsbe_hub.rollouts.service import newer

    assert newer(candidate, current) is expected
