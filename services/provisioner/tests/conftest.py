from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from letsbe_contracts import (
    AutomationMode,
    DnsReadyV1,
    DnsRecordRef,
    Envelope,
    OrderSpec,
    Provider,
    Region,
    ServerTarget,
    Tier,
    decode,
)
from letsbe_contracts.events import TenantTaskRequestedV1
from letsbe_fakes import LoopbackServer
from letsbe_fakes.ssh_target import SshTarget
from letsbe_platform.bus import Delivery
from letsbe_provisioner.config import ProvisionerSettings
from letsbe_provisioner.jobs import tasks

sys.path.insert(0, str(Path(__file__).parent))
from hub_standin import HubStandIn

HUB_TOKEN = "lbp_provisioner_test_token_0123456789"


@pytest.fixture
def target() -> Iterator[SshTarget]:
    with SshTarget() as t:
        yield t


@pytest.fixture
def hub() -> Iterator[HubStandIn]:
    standin = HubStandIn(HUB_TOKEN)
    with LoopbackServer(standin.app) as srv:
        standin.url = srv.url  # type: ignore[attr-defined]
        yield standin


@pytest.fixture
def key_file(target: SshTarget, tmp_path: Path) -> Path:
    return target.write_client_key(tmp_path / "id_provisioner")


@pytest.fixture
def provisioner_env(service_env: dict[str, str], target: SshTarget, hub: HubStandIn, key_file: Path) -> dict[str, str]:
    """Settings for a test: short waits, the loopback target's sandbox as the remote root."""
    return {
        **service_env,
        "LETSBE_PROVISIONER_HUB_URL": hub.url,  # type: ignore[attr-defined]
        "LETSBE_PROVISIONER_HUB_TOKEN": HUB_TOKEN,
        "LETSBE_PROVISIONER_SSH_PRIVATE_KEY_FILE": str(key_file),
        "LETSBE_PROVISIONER_REMOTE_ROOT": str(target.root),
        "LETSBE_PROVISIONER_SECRETS_KEY": Fernet.generate_key().decode(),
        "LETSBE_PROVISIONER_RETRY_BACKOFF_SECONDS": "[0.05, 0.1]",
        "LETSBE_PROVISIONER_LEASE_SECONDS": "2",
        "LETSBE_PROVISIONER_ACK_WAIT_SECONDS": "2",
        "LETSBE_PROVISIONER_LOG_FLUSH_SECONDS": "0.05",
        "LETSBE_PROVISIONER_REGISTRATION_TIMEOUT_SECONDS": "5",
        "LETSBE_PROVISIONER_REGISTRATION_POLL_SECONDS": "0.05",
        "LETSBE_PROVISIONER_STEP_TIMEOUT_SECONDS": "60",
        "LETSBE_PROVISIONER_LOG_JSON": "true",
    }


@pytest.fixture
def settings(provisioner_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> ProvisionerSettings:
    for k, v in provisioner_env.items():
        monkeypatch.setenv(k, v)
    return ProvisionerSettings()


def server_target(target: SshTarget, **overrides: Any) -> ServerTarget:
    fields: dict[str, Any] = {
        "server_id": uuid.uuid4(),
        "provider": Provider.NETCUP,
        "provider_ref": "v2202611-test",
        "ipv4": target.host,
        "ssh_port": target.port,
        "ssh_user": target.user,
        "host_key_fingerprint": target.fingerprint,
    }
    fields.update(overrides)
    return ServerTarget(**fields)


def dns_ready(
    target: SshTarget,
    *,
    tools: tuple[str, ...] = ("nextcloud", "ghost"),
    domain: str = "example.com",
    order_id: uuid.UUID | None = None,
    **server: Any,
) -> DnsReadyV1:
    order = OrderSpec(
        order_id=order_id or uuid.uuid4(),
        domain=domain,
        tier=Tier.LITE,
        region=Region.EU,
        tools=tools,
        automation_mode=AutomationMode.AUTO,
        customer_email="owner@example.com",
    )
    return DnsReadyV1(
        order=order,
        server=server_target(target, **server),
        records=(
            DnsRecordRef(type="A", name=domain, content="127.0.0.1"),
            DnsRecordRef(type="A", name=f"*.{domain}", content="127.0.0.1"),
        ),
    )


async def staged_events(engine: Any) -> list[tuple[Envelope, Any]]:
    """Everything the provisioner staged in its outbox, in outbox order, decoded."""
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT envelope FROM provisioner.outbox ORDER BY seq"))).all()
    out = []
    for (raw,) in rows:
        env = Envelope.model_validate(raw)
        out.append((env, decode(env)))
    return out


def task_delivery(event: TenantTaskRequestedV1) -> Delivery:
    """How the provisioner's tenant-task consumer would hand ``event`` over (its first delivery)."""

    class _Msg:
        async def in_progress(self) -> None:
            return None

    env = event.envelope(correlation_id=event.tenant_id, event_id=event.request_id)
    return Delivery(envelope=env, subject="x", num_delivered=1, msg=_Msg(), consumer=tasks.DURABLE)  # type: ignore[arg-type]
