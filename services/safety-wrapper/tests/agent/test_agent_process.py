"""The Safety Wrapper as a real process against a real hub process and a Docker Engine fake on a unix socket."""

import tempfile
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from letsbe_fakes.docker_engine import DockerEngineFake
from letsbe_platform.testing import eventually
from letsbe_platform.testing.processes import ServiceProcess

ADMIN = "lbh_test-admin-token-0123456789abcdef"
REPO = "registry.letsbe.biz/letsbe/openclaw"
OLD = REPO + "@sha256:" + "a" * 64
NEW = REPO + "@sha256:" + "b" * 64
BAD = REPO + "@sha256:" + "f" * 64


@pytest.fixture
def docker_fake():
    d = Path(tempfile.mkdtemp(prefix="dk"))
    with DockerEngineFake(d / "d.sock", health_delay=0.1) as fake:
        fake.add_container("openclaw", OLD)
        yield fake


def hub_process(service_env, port=None) -> ServiceProcess:
    env = service_env | {
        "LETSBE_HUB_BOOTSTRAP_ADMIN_TOKEN": ADMIN,
        "LETSBE_HUB_HEARTBEAT_INTERVAL_SECONDS": "1",
        "LETSBE_HUB_COMMAND_SWEEP_SECONDS": "0.5",
        "LETSBE_HUB_SHUTDOWN_GRACE_SECONDS": "1",
    }
    return ServiceProcess("letsbe_hub", env, port=port, port_env="LETSBE_HUB_PORT")


async def test_update_with_rollback_and_results_buffered_across_a_hub_outage(
    service_env, processes, docker_fake, tmp_path, sessions
):
    hub = hub_process(service_env).start()
    processes.append(hub)
    await hub.wait_ready()
    admin = {"Authorization": f"Bearer {ADMIN}"}
    tenant_id = uuid.uuid4()
    async with httpx.AsyncClient(base_url=hub.url, headers=admin, timeout=10) as client:
        r = await client.post(
            f"/api/v1/admin/tenants/{tenant_id}/registration-tokens",
            json={"domain": "acme.example.com", "order_id": str(tenant_id), "tier": "build", "region": "eu"},
        )
        token_file = tmp_path / "registration-token"
        token_file.write_text(r.json()["token"])
        sw = ServiceProcess(
            "letsbe_safety_wrapper",
            {
                "LETSBE_SW_HUB_URL": hub.url,
                "LETSBE_SW_STATE_DIR": str(tmp_path / "sw"),
                "LETSBE_SW_REGISTRATION_TOKEN_FILE": str(token_file),
                "LETSBE_SW_DOCKER_SOCKET": str(docker_fake.socket_path),
                "LETSBE_SW_BACKOFF_BASE_SECONDS": "0.1",
                "LETSBE_SW_BACKOFF_MAX_SECONDS": "0.5",
                "LETSBE_SW_UPDATE_POLL_SECONDS": "0.05",
                "LETSBE_SW_BACKUP_STATUS_PATH": str(tmp_path / "backup-status.json"),
                "LETSBE_SW_BACKUP_LOCK_PATH": str(tmp_path / "backup.lock"),
                "LETSBE_SW_USAGE_LEDGER_PATH": str(tmp_path / "usage.sqlite3"),
            },
            port_env="LETSBE_SW_PORT",
        ).start()
        processes.append(sw)
        await sw.wait_ready()

        async def registered():
            try:
                view = (await client.get(f"/api/v1/admin/tenants/{tenant_id}")).json()
            except httpx.HTTPError:
                return None
            agents = [a for a in view["agents"] if a["last_heartbeat_at"]]
            return view["status"] == "ACTIVE" and agents

        await eventually(registered, timeout=20, every=0.1)

        async def update(digest: str, key: str, min_healthy: float) -> dict:
            params = {
                "component": "openclaw",
                "image": REPO,
                "digest": digest,
                "version": "2.0.0",
                "min_healthy_seconds": min_healthy,
                "deadline_seconds": 10,
                "min_free_disk_bytes": 0,
            }
            body = {"type": "update", "params": params, "idempotency_key": key}
            r = await client.post(f"/api/v1/admin/tenants/{tenant_id}/commands", json=body)
            assert r.status_code == 201, r.text
            return r.json()

        async def status_of(cid, *wanted):
            try:
                v = (await client.get(f"/api/v1/admin/commands/{cid}")).json()
            except httpx.HTTPError:  # the hub is down on purpose for part of this test
                return None
            return v if v["status"] in wanted else None

        # 1. a new image that fails its health check is rolled back, locally, to the previous image
        docker_fake.fail_health(BAD)
        bad = await update(BAD.split("@")[1], "bad", 0.5)
        v = await eventually(lambda: status_of(bad["id"], "ROLLED_BACK", "FAILED", "SUCCEEDED"), timeout=20, every=0.1)
        assert v["status"] == "ROLLED_BACK", v
        assert "health check" in v["error"]
        assert docker_fake.by_name("openclaw")["Config"]["Image"] == OLD

        # 2. the hub goes away while an update runs: the result waits on disk and arrives once it is back
        good = await update(NEW.split("@")[1], "good", 2.0)
        await eventually(lambda: status_of(good["id"], "RUNNING"), timeout=20, every=0.1)
        hub.kill()
        await eventually(lambda: _image_is(docker_fake, NEW), timeout=20, every=0.1)
        # Healthy long enough: the agent has its result and keeps it on disk while the hub is still down.
        outbox = tmp_path / "sw" / "outbox"

        def result_buffered() -> bool:
            return any(good["id"] in p.read_text() for p in outbox.glob("*.json"))

        await eventually(result_buffered, "the update's result buffered on disk", timeout=30, every=0.1)
        hub2 = hub_process(service_env, port=hub.port).start()
        processes.append(hub2)
        await hub2.wait_ready()
        v = await eventually(lambda: status_of(good["id"], "SUCCEEDED"), timeout=20, every=0.1)
        assert v["result"]["previous_image"] == OLD
        assert [t["to_status"] for t in v["transitions"]] == ["QUEUED", "DELIVERED", "RUNNING", "SUCCEEDED"]
        assert docker_fake.by_name("openclaw")["Config"]["Image"] == NEW
    async with sessions() as s:
        beats = (
            await s.execute(text("SELECT last_seq FROM hub.agents WHERE tenant_id = :t"), {"t": tenant_id})
        ).scalar()
    assert beats >= 3
    sw.terminate()  # graceful: uvicorn finishes the lifespan, then re-raises SIGTERM
    assert "Application shutdown complete" in sw.logs(), sw.logs()[-3000:]


async def _image_is(fake, image):
    c = fake.by_name("openclaw")
    return c is not None and c["Config"]["Image"] == image
