"""The update command on one tenant, against a Docker Engine fake on a unix socket."""

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from letsbe_agent.commands import CommandContext
from letsbe_agent.docker import DockerClient
from letsbe_agent.journal import CommandJournal
from letsbe_agent.update import Updater
from letsbe_contracts.agent import CommandOut, UpdateParams

REPO = "registry.letsbe.biz/letsbe/openclaw"
OLD = REPO + "@sha256:" + "a" * 64
NEW = REPO + "@sha256:" + "b" * 64


def _ctx(tmp_path: Path, **params) -> CommandContext:
    p = {"component": "openclaw", "image": REPO, "digest": "sha256:" + "b" * 64, "version": "2.0.0"}
    p |= {"min_healthy_seconds": 0.3, "deadline_seconds": 3, "min_free_disk_bytes": 0} | params
    cmd = CommandOut(
        id=uuid.uuid4(),
        type="update",
        params=p,
        idempotency_key="k",
        expires_at=datetime.now(UTC),
        deadline_seconds=60,
        created_at=datetime.now(UTC),
    )
    journal = CommandJournal(tmp_path / "journal")
    journal.begin(cmd.id, cmd.model_dump(mode="json"))
    return CommandContext(command=cmd, params=UpdateParams.model_validate(p), journal=journal, data={})


@pytest.fixture
async def updater(docker_fake):
    client = DockerClient(docker_fake.socket_path)
    backup = {"running": False}
    u = Updater(
        client,
        own_component="safety-wrapper",
        free_disk_bytes=lambda: 50 * 1024**3,
        backup_running=lambda: backup["running"],
        poll_seconds=0.05,
    )
    u.backup = backup  # type: ignore[attr-defined]
    yield u
    await client.aclose()


async def test_update_replaces_the_container_and_keeps_its_configuration(docker_fake, updater, tmp_path):
    docker_fake.add_container("openclaw", OLD)
    outcome = await updater.update(_ctx(tmp_path))
    assert outcome.status == "SUCCEEDED", outcome
    now = docker_fake.by_name("openclaw")
    assert now["Config"]["Image"] == NEW
    assert now["Config"]["Env"] == ["A=1"]
    assert now["State"]["Running"]
    assert outcome.result["previous_image"] == OLD
    assert ("POST", "/images/create") in docker_fake.requests


async def test_failed_health_check_rolls_back_to_the_previous_image(docker_fake, updater, tmp_path):
    docker_fake.add_container("openclaw", OLD)
    docker_fake.fail_health(NEW)
    ctx = _ctx(tmp_path)
    outcome = await updater.update(ctx)
    assert outcome.status == "ROLLED_BACK"
    assert "health check" in outcome.error
    now = docker_fake.by_name("openclaw")
    assert now["Config"]["Image"] == OLD and now["State"]["Running"]
    assert len(docker_fake.containers) == 1
    assert ctx.journal.get(ctx.command.id)["data"]["phase"] == "rolled-back"


async def test_a_container_that_exits_after_start_is_rolled_back(docker_fake, updater, tmp_path):
    docker_fake.add_container("openclaw", OLD)
    docker_fake.crashing_images.add(NEW)
    outcome = await updater.update(_ctx(tmp_path))
    assert outcome.status == "ROLLED_BACK"
    assert docker_fake.by_name("openclaw")["Config"]["Image"] == OLD


async def test_not_healthy_long_enough_before_the_deadline_rolls_back(docker_fake, updater, tmp_path):
    docker_fake.add_container("openclaw", OLD)
    docker_fake.image_health_delay[NEW] = 5  # stays "starting" past the deadline
    outcome = await updater.update(_ctx(tmp_path, deadline_seconds=1, min_healthy_seconds=0.2))
    assert outcome.status == "ROLLED_BACK"
    assert "within the deadline" in outcome.error


async def test_a_failing_rollback_is_reported_as_failed_with_rollback_failed(docker_fake, updater, tmp_path):
    docker_fake.add_container("openclaw", OLD)
    docker_fake.fail_health(NEW)
    docker_fake.fail_health(OLD)  # the old one does not come back either
    outcome = await updater.update(_ctx(tmp_path))
    assert outcome.status == "FAILED"
    assert outcome.result["rollback_failed"] is True


async def test_a_failed_pull_changes_nothing(docker_fake, updater, tmp_path):
    cid = docker_fake.add_container("openclaw", OLD)
    docker_fake.fail_pull(NEW, "manifest unknown")
    outcome = await updater.update(_ctx(tmp_path))
    assert outcome.status == "FAILED" and "manifest unknown" in outcome.error
    assert list(docker_fake.containers) == [cid]


@pytest.mark.parametrize(
    ("setup", "params", "expect_status", "expect_text"),
    [
        ("backup", {}, "FAILED", "backup is running"),
        ("none", {"min_free_disk_bytes": 10**18}, "FAILED", "bytes free"),
        ("none", {"component": "safety-wrapper"}, "FAILED", "own container"),
        ("none", {"container": "missing"}, "FAILED", "no container named missing"),
    ],
)
async def test_prechecks_refuse_before_touching_anything(
    docker_fake, updater, tmp_path, setup, params, expect_status, expect_text
):
    docker_fake.add_container("openclaw", OLD)
    if setup == "backup":
        updater.backup["running"] = True
    before = len(docker_fake.requests)
    outcome = await updater.update(_ctx(tmp_path, **params))
    assert outcome.status == expect_status and expect_text in outcome.error
    assert all(m == "GET" for m, _ in docker_fake.requests[before:])  # nothing changed on the engine


async def test_already_on_the_target_digest_is_success_without_a_restart(docker_fake, updater, tmp_path):
    cid = docker_fake.add_container("openclaw", NEW)
    outcome = await updater.update(_ctx(tmp_path))
    assert outcome.status == "SUCCEEDED" and outcome.result["already_current"] is True
    assert list(docker_fake.containers) == [cid]


async def test_recovery_after_a_restart_mid_switch_rolls_back(docker_fake, updater, tmp_path):
    """The agent died after removing the old container: recovery recreates it from the journal."""
    docker_fake.add_container("openclaw", OLD)
    ctx = _ctx(tmp_path)
    old = docker_fake.by_name("openclaw")
    from letsbe_agent.docker import create_body

    ctx.record(
        phase="replacing", previous={"name": "openclaw", "image": OLD, "body": create_body(old, OLD)}, target=NEW
    )
    docker_fake.containers.clear()  # the old one was removed, the new one never created
    outcome = await updater.recover(ctx)
    assert outcome.status == "ROLLED_BACK"
    assert docker_fake.by_name("openclaw")["Config"]["Image"] == OLD
