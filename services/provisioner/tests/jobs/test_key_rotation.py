"""Key rotation of a provisioned tenant against a real SSH server on loopback (recording stand-ins for docker), real
Postgres: the new value is stored encrypted, exactly the affected env files change, exactly those containers are
recreated, a redelivery changes nothing, and a secrets-key rotation never leaves a store no kept key opens."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from sqlalchemy import select

from letsbe_agent import fernet
from letsbe_contracts.events import TenantKeyRotationReportedV1, TenantKeyRotationRequestedV1
from letsbe_fakes.ssh_target import SshTarget
from letsbe_provisioner.config import ProvisionerSettings
from letsbe_provisioner.jobs.hub import HubClient
from letsbe_provisioner.jobs.models import KeyRotation
from letsbe_provisioner.jobs.rotation import Rotator
from letsbe_provisioner.jobs.secrets import SecretBox, load_secrets
from letsbe_provisioner.jobs.service import Pipeline

from ..conftest import HUB_TOKEN, dns_ready, staged_events

AI = "/opt/letsbe/ai"
STORE = "/var/lib/letsbe/secrets/secrets.enc"


@pytest.fixture
async def pipeline(settings: ProvisionerSettings, sessions: Any, hub: Any, key_file: Any) -> Any:
    assert settings.secrets_key is not None
    client = HubClient(hub.url, HUB_TOKEN, timeout=5)
    yield Pipeline(
        settings,
        sessions,
        client,
        SecretBox(settings.secrets_key.get_secret_value()),
        asyncssh.read_private_key(str(key_file)),
    )
    await client.aclose()


@pytest.fixture
async def tenant(pipeline: Pipeline, target: SshTarget) -> uuid.UUID:
    """A provisioned tenant (ten steps on the target), its docker calls cleared."""
    event = dns_ready(target, tools=("ghost",))
    await pipeline.on_dns_ready(event)
    target.clear_calls()
    return event.order.order_id


def env_files(target: SshTarget) -> dict[str, dict[str, str]]:
    out = {}
    for name in ("openclaw", "safety-wrapper", "secrets-proxy"):
        text = target.path(f"{AI}/{name}.env").read_text()
        out[name] = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    return out


def ups(target: SshTarget) -> list[list[str]]:
    return [c[c.index("up") :] for c in target.calls("docker") if "compose" in c and "up" in c]


def request(tenant_id: uuid.UUID, key: str, **extra: Any) -> TenantKeyRotationRequestedV1:
    fields: dict[str, Any] = {
        "command_id": uuid.uuid4(),
        "tenant_id": tenant_id,
        "key": key,
        "requested_by": "token:alice",
        "expires_at": datetime.now(UTC) + timedelta(hours=1),
    }
    return TenantKeyRotationRequestedV1(**(fields | extra))


async def reports(engine: Any, command_id: uuid.UUID) -> list[TenantKeyRotationReportedV1]:
    return [
        e for _, e in await staged_events(engine)
        if isinstance(e, TenantKeyRotationReportedV1) and e.command_id == command_id
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("key", "env_key", "recreated"),
    [
        ("tools-token", "LETSBE_SW_TOOLS_TOKEN", ["openclaw", "safety-wrapper"]),
        ("sentinel-key", "LETSBE_SP_SENTINEL_KEY", ["openclaw", "secrets-proxy"]),
    ],
)
async def test_a_rotation_renders_the_new_value_into_exactly_the_containers_that_use_it(
    pipeline: Pipeline, target: SshTarget, tenant: uuid.UUID, engine: Any, sessions: Any, hub: Any,
    key: str, env_key: str, recreated: list[str],
) -> None:  # fmt: skip
    before = env_files(target)
    llm_keys = len(hub.llm_keys)
    tokens = len(hub.issued)
    event = request(tenant, key)
    await Rotator(pipeline).on_requested(event)

    after = env_files(target)
    async with sessions() as s:
        secrets = await load_secrets(s, pipeline.box, tenant)
    name = {"tools-token": "ai.tools_token", "sentinel-key": "ai.sentinel_key"}[key]
    new = secrets[name]
    assert new != before["openclaw"][{"tools-token": "LETSBE_TOOLS_TOKEN", "sentinel-key": "LETSBE_SENTINEL_KEY"}[key]]
    owner = "safety-wrapper" if key == "tools-token" else "secrets-proxy"
    assert after[owner][env_key] == new  # the checking side and the presenting side hold the same new value
    assert new in after["openclaw"].values()
    untouched = ({"safety-wrapper", "secrets-proxy"} - set(recreated)).pop()
    assert after[untouched] == before[untouched]
    for f in ("openclaw", "safety-wrapper", "secrets-proxy"):
        assert target.path(f"{AI}/{f}.env").stat().st_mode & 0o777 == 0o600
    # Exactly those containers, nothing they depend on; no registration token; a relay key only for the proxy's file.
    assert ups(target) == [["up", "-d", "--quiet-pull", "--no-deps", "--force-recreate", *recreated]]
    assert len(hub.issued) == tokens
    assert len(hub.llm_keys) == llm_keys + (1 if "secrets-proxy" in recreated else 0)
    if "secrets-proxy" in recreated:
        assert after["secrets-proxy"]["LETSBE_SP_UPSTREAM_API_KEY"] == hub.llm_keys[-1]

    got = await reports(engine, event.command_id)
    assert [(r.status, list(r.recreated)) for r in got] == [("RUNNING", []), ("SUCCEEDED", recreated)]
    staged = json.dumps([env.model_dump(mode="json") for env, _ in await staged_events(engine)])
    assert new not in staged and before["openclaw"][
        {"tools-token": "LETSBE_TOOLS_TOKEN", "sentinel-key": "LETSBE_SENTINEL_KEY"}[key]
    ] not in staged  # no value, old or new, leaves in an event

    # Redelivered: nothing runs again and the value stays; the outcome is reported again (the same event).
    await Rotator(pipeline).on_requested(event)
    assert len(ups(target)) == 1
    async with sessions() as s:
        assert (await load_secrets(s, pipeline.box, tenant))[name] == new
    assert len(await reports(engine, event.command_id)) == 2


async def test_a_rotation_for_a_tenant_that_is_not_provisioned_is_refused_and_changes_nothing(
    pipeline: Pipeline, engine: Any, sessions: Any
) -> None:
    event = request(uuid.uuid4(), "tools-token")
    await Rotator(pipeline).on_requested(event)
    [failed] = await reports(engine, event.command_id)
    assert failed.status == "FAILED" and "no job" in (failed.error or "")
    expired = request(uuid.uuid4(), "tools-token", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    await Rotator(pipeline).on_requested(expired)
    [failed] = await reports(engine, expired.command_id)
    assert failed.status == "FAILED" and "expired" in (failed.error or "")


def safety_wrapper_secrets(
    target: SshTarget, *args: str, key: str, previous: str | None = None, stdin: str = ""
) -> str:
    """The Safety Wrapper's own secrets command (its program, with the keys of its env file), as it runs on the
    tenant: loading the store with a previous key re-encrypts it under the current one."""
    env = {"PATH": os.environ["PATH"], "LETSBE_SW_SECRETS_PATH": target.path(STORE), "LETSBE_SW_SECRETS_KEY": key}
    if previous is not None:
        env["LETSBE_SW_SECRETS_PREVIOUS_KEY"] = previous
    done = subprocess.run([sys.executable, "-m", "letsbe_safety_wrapper.tools.secrets", *args], input=stdin,
                          env=env, capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def stored(path: Path, key: str) -> dict[str, Any]:
    """The store's secrets as the file holds them (the format both agents read: a Fernet token of JSON)."""
    return json.loads(fernet.decrypt(key, path.read_bytes()))["secrets"]


async def play_safety_wrapper(target: SshTarget) -> None:
    """What the Safety Wrapper does when compose recreates it: load its store with the keys in its env file."""
    seen = 0
    while True:
        started = [u for u in ups(target) if "safety-wrapper" in u]
        if len(started) > seen:
            seen = len(started)
            env = env_files(target)["safety-wrapper"]
            await asyncio.to_thread(
                safety_wrapper_secrets, target, "list", key=env["LETSBE_SW_SECRETS_KEY"],
                previous=env.get("LETSBE_SW_SECRETS_PREVIOUS_KEY"),
            )  # fmt: skip
        await asyncio.sleep(0.05)


async def test_the_secrets_key_moves_the_store_to_the_new_key_and_an_unfinished_rotation_is_finished_by_the_next(
    pipeline: Pipeline, target: SshTarget, tenant: uuid.UUID, engine: Any, sessions: Any, monkeypatch: Any
) -> None:
    old = env_files(target)["safety-wrapper"]["LETSBE_SW_SECRETS_KEY"]
    store = Path(target.path(STORE))
    safety_wrapper_secrets(target, "set", "ghost_admin_token", "--tools", "ghost", key=old,
                           stdin="ghost-admin-0123456789abcdef")  # fmt: skip

    # 1. The Safety Wrapper does not come back (nothing here plays it): the rotation fails after its wait, and keeps
    # both keys, so the store (still under the old key) stays readable and nothing is lost.
    rekey_timeout = pipeline.settings.rekey_timeout_seconds
    monkeypatch.setattr(pipeline.settings, "rekey_timeout_seconds", 0.5)
    first = request(tenant, "secrets-key")
    await Rotator(pipeline).on_requested(first)
    [_, failed] = await reports(engine, first.command_id)
    assert failed.status == "FAILED" and "previous key is kept" in (failed.error or "")
    sw = env_files(target)["safety-wrapper"]
    new = sw["LETSBE_SW_SECRETS_KEY"]
    assert new != old and sw["LETSBE_SW_SECRETS_PREVIOUS_KEY"] == old
    assert env_files(target)["secrets-proxy"]["LETSBE_SP_SECRETS_KEY"] == old  # the proxy reads what the store is
    assert stored(store, old)["ghost_admin_token"]["value"] == "ghost-admin-0123456789abcdef"
    assert ups(target) == [["up", "-d", "--quiet-pull", "--no-deps", "--force-recreate", "safety-wrapper"]]

    # 2. The operator asks again; this time the wrapper comes back and re-encrypts the store as it loads it (the
    # usual wait: the wrapper's loading runs a real process, which a busy machine can hold up for seconds).
    monkeypatch.setattr(pipeline.settings, "rekey_timeout_seconds", rekey_timeout)
    target.clear_calls()
    wrapper = asyncio.create_task(play_safety_wrapper(target))
    second = request(tenant, "secrets-key")
    try:
        await Rotator(pipeline).on_requested(second)
    finally:
        wrapper.cancel()
    got = await reports(engine, second.command_id)
    assert [r.status for r in got] == ["RUNNING", "SUCCEEDED"], got[-1].error
    env = env_files(target)
    assert env["safety-wrapper"]["LETSBE_SW_SECRETS_KEY"] == env["secrets-proxy"]["LETSBE_SP_SECRETS_KEY"] == new
    assert "LETSBE_SW_SECRETS_PREVIOUS_KEY" not in env["safety-wrapper"]  # the unfinished rotation's key, finished
    assert stored(store, new)["ghost_admin_token"]["value"] == "ghost-admin-0123456789abcdef"
    with pytest.raises(fernet.InvalidToken):
        stored(store, old)
    assert ups(target) == [
        ["up", "-d", "--quiet-pull", "--no-deps", "--force-recreate", "safety-wrapper"],
        ["up", "-d", "--quiet-pull", "--no-deps", "--force-recreate", "safety-wrapper", "secrets-proxy"],
    ]
    async with sessions() as s:
        secrets = await load_secrets(s, pipeline.box, tenant)
        rows = (await s.execute(select(KeyRotation).where(KeyRotation.tenant_id == tenant))).scalars().all()
    assert secrets["ai.secrets_key"] == new and "ai.secrets_key_previous" not in secrets
    assert {(r.command_id, r.status, r.requested_by) for r in rows} == {
        (first.command_id, "FAILED", "token:alice"), (second.command_id, "SUCCEEDED", "token:alice")
    }
    assert all(new not in (r.output_tail or "") and old not in (r.error or "") for r in rows)
