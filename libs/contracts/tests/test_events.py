import json
import uuid
from datetime import UTC, datetime

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from pydantic import ValidationError

from letsbe_contracts import (
    EVENT_TYPES,
    AlertRaisedV1,
    AlertResolvedV1,
    DeadLetteredV1,
    DnsReadyV1,
    DnsRecordRef,
    Envelope,
    OrderCreatedV1,
    OrderFailedV1,
    OrderSpec,
    ProvisionedV1,
    ProvisioningLogV1,
    ProvisioningStepV1,
    ServerAllocatedV1,
    ServerTarget,
    TenantHeartbeatV1,
    decode,
)
from letsbe_contracts.events import (
    AlertAcknowledgedV1,
    AlertSilencedV1,
    BackupStatus,
    HeartbeatDetails,
    LifecycleJobChangedV1,
    MailReadyV1,
    OrderStatusChangedV1,
    ServerMigrationProposedV1,
    TenantAgentRegisteredV1,
    TenantBackupReportedV1,
    TenantDecommissionedV1,
    TenantKeyRotationReportedV1,
    TenantKeyRotationRequestedV1,
    TenantTaskReportedV1,
    TenantTaskRequestedV1,
    TenantUsageReportedV1,
    UsageTotals,
)
from letsbe_contracts.schemas import SCHEMA_DIR, drift, event_schema, main

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
ORDER = OrderSpec(
    order_id=uuid.uuid4(),
    domain="Example.COM",
    tier="build",
    region="eu",
    tools=("nextcloud", "ghost"),
    automation_mode="AUTO",
    customer_email="owner@example.com",
)
SERVER = ServerTarget(
    server_id=uuid.uuid4(),
    provider="netcup",
    provider_ref="v2202511123456",
    ipv4="203.0.113.10",
    ipv6="2001:db8::10",
    host_key_fingerprint="SHA256:" + "A" * 43,
)
BACKUP = BackupStatus.model_validate(
    {
        "last_run": "2026-02-27T02:15:00Z",
        "duration_seconds": 342,
        "databases": {
            "chatwoot": {"status": "success", "size_mb": 45},
            "nextcloud": {"status": "failed", "error": "connection refused"},
        },
        "remote_sync": {"status": "success", "uploaded_mb": 230},
    }
)

SAMPLES = [
    OrderCreatedV1(order=ORDER),
    TenantKeyRotationRequestedV1(
        command_id=uuid.uuid4(), tenant_id=ORDER.order_id, key="tools-token", requested_by="token:alice", expires_at=NOW
    ),
    TenantKeyRotationReportedV1(
        command_id=uuid.uuid4(),
        tenant_id=ORDER.order_id,
        key="secrets-key",
        status="SUCCEEDED",
        recreated=("safety-wrapper", "secrets-proxy"),
    ),
    TenantTaskRequestedV1(
        request_id=uuid.uuid4(),
        job_id=uuid.uuid4(),
        tenant_id=ORDER.order_id,
        attempt=1,
        task={"kind": "tool-stack", "action": "add", "tool": "umami", "order": ORDER, "server": SERVER},
    ),
    TenantTaskRequestedV1(
        request_id=uuid.uuid4(),
        job_id=uuid.uuid4(),
        tenant_id=ORDER.order_id,
        attempt=2,
        task={"kind": "restore", "order": ORDER, "server": SERVER, "backup_set": "2026-12-01", "tool": "nextcloud"},
    ),
    TenantTaskRequestedV1(
        request_id=uuid.uuid4(),
        job_id=uuid.uuid4(),
        tenant_id=ORDER.order_id,
        attempt=1,
        task={"kind": "final-backup"},
    ),
    TenantTaskReportedV1(
        request_id=uuid.uuid4(),
        job_id=uuid.uuid4(),
        tenant_id=ORDER.order_id,
        kind="final-backup",
        attempt=1,
        status="SUCCEEDED",
        started_at=NOW,
        finished_at=NOW,
        result={"last_run": "2026-12-02T08:00:00Z", "duration_seconds": 41.5, "databases": {},
                "remote_sync": {"status": "skipped"}},
    ),
    TenantTaskReportedV1(
        request_id=uuid.uuid4(),
        job_id=uuid.uuid4(),
        tenant_id=ORDER.order_id,
        kind="tool-backup",
        attempt=2,
        status="FAILED",
        changes=("kept: the final backup of Ghost in /var/backups/letsbe/final/ghost/…",),
        detail="exit code 1: dump failed",
    ),
    ServerAllocatedV1(order=ORDER, server=SERVER),
    DnsReadyV1(
        order=ORDER, server=SERVER, records=(DnsRecordRef(type="A", name="example.com", content="203.0.113.10"),)
    ),
    ProvisionedV1(order=ORDER, server=SERVER, tenant_id=ORDER.order_id, job_id=uuid.uuid4(), duration_seconds=412.5),
    MailReadyV1(
        order=ORDER, server=SERVER, tenant_id=ORDER.order_id, dkim_selector="letsbe", dkim_public_key="MIIB" + "A" * 388
    ),
    OrderFailedV1(
        order_id=ORDER.order_id, stage="DNS", reason="Cloudflare: 81057 record already exists", retryable=True
    ),
    ProvisioningStepV1(
        order_id=ORDER.order_id, job_id=uuid.uuid4(), step=5, name="docker", status="RUNNING", attempt=1
    ),
    ProvisioningLogV1(order_id=ORDER.order_id, job_id=uuid.uuid4(), step=5, seq=17, stream="stdout", line="ok"),
    TenantAgentRegisteredV1(
        tenant_id=ORDER.order_id, order_id=ORDER.order_id, agent_id=uuid.uuid4(), agent="safety-wrapper"
    ),
    TenantHeartbeatV1(
        tenant_id=ORDER.order_id,
        agent_id=uuid.uuid4(),
        agent="safety-wrapper",
        domain="example.com",
        received_at=NOW,
        interval_seconds=60,
        details=HeartbeatDetails(
            disk={"total_bytes": 100, "used_bytes": 86, "percent": 86.0},
            memory={"total_bytes": 100, "available_bytes": 20, "percent": 80.0},
            backup=BACKUP,
        ),
    ),
    AlertRaisedV1(
        alert_id=uuid.uuid4(),
        tenant_id=None,
        rule="pool.below_minimum",
        severity="medium",
        summary="EU build pool has 1 server, minimum 3",
        value=1,
        threshold=3,
        first_seen=NOW,
        last_seen=NOW,
    ),
    AlertResolvedV1(alert_id=uuid.uuid4(), tenant_id=ORDER.order_id, rule="disk", resolved_at=NOW, summary="disk 70%"),
    DeadLetteredV1(
        consumer="dns-on-server-allocated",
        original_subject="letsbe.server.allocated.v1",
        error="boom",
        deliveries=8,
        raw="{}",
    ),
    TenantBackupReportedV1(
        tenant_id=ORDER.order_id,
        agent_id=uuid.uuid4(),
        domain="example.com",
        report_date=NOW.date(),
        checked_at=NOW,
        status=BACKUP,
    ),
    TenantUsageReportedV1(
        tenant_id=ORDER.order_id,
        hour=NOW,
        sequence=0,
        lines=(UsageTotals(model="claude-sonnet", tokens_in=1200, tokens_out=300, requests=4),),
    ),
    AlertAcknowledgedV1(alert_id=uuid.uuid4(), acknowledged_by="ops-alice", acknowledged_at=NOW, note="on it"),
    AlertSilencedV1(alert_id=uuid.uuid4(), silenced_until=None, silenced_by="ops-alice", silenced_at=NOW),
    OrderStatusChangedV1(
        order_id=ORDER.order_id, from_status="DNS_PENDING", to_status="FAILED", actor="dns", failed_stage="DNS"
    ),
    TenantDecommissionedV1(tenant_id=ORDER.order_id, domain="example.com"),
    LifecycleJobChangedV1(
        job_id=uuid.uuid4(),
        kind="decommission",
        tenant_id=ORDER.order_id,
        from_status=None,
        to_status="EXPORT_WINDOW",
        actor="operator",
    ),
    ServerMigrationProposedV1(
        proposal_id=uuid.uuid4(),
        period="2026-12",
        tenant_id=ORDER.order_id,
        tier="build",
        region="eu",
        from_server_id=uuid.uuid4(),
        to_server_id=SERVER.server_id,
        monthly_saving_eur=4.5,
    ),
]


def test_every_registered_event_has_a_sample():
    assert {(type(s).TYPE, type(s).VERSION) for s in SAMPLES} == set(EVENT_TYPES)
    # The backbone and progress events named by the architecture are all registered.
    names = {t for t, _ in EVENT_TYPES}
    assert names >= {
        "order-created",
        "server-allocated",
        "dns-ready",
        "provisioned",
        "order-failed",
        "provisioning-step",
        "provisioning-log",
        "tenant-heartbeat",
        "alert-raised",
        "alert-resolved",
    }


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).TYPE)
def test_event_round_trips_through_its_envelope_as_json(event):
    env = event.envelope(correlation_id=ORDER.order_id)
    wire = env.model_dump_json()
    back = Envelope.model_validate_json(wire)
    assert back == env
    assert decode(back) == event
    assert back.type == type(event).TYPE and back.version == type(event).VERSION


def test_mail_ready_refuses_a_dkim_value_that_would_break_the_txt_record():
    fields = {"order": ORDER, "server": SERVER, "tenant_id": ORDER.order_id, "dkim_selector": "letsbe"}
    for bad in ("MIIB" + "A" * 300 + '"; v=spf1', "", "A" * 900):
        with pytest.raises(ValidationError):
            MailReadyV1(**fields, dkim_public_key=bad)
    with pytest.raises(ValidationError):
        MailReadyV1(**{**fields, "dkim_selector": "Bad_Selector."}, dkim_public_key="MIIB" + "A" * 388)


def test_domain_is_normalised_and_validated():
    assert ORDER.domain == "example.com"
    for bad in ("example", "-bad.com", "exa mple.com", "a" * 64 + ".com", "http://example.com"):
        with pytest.raises(ValidationError):
            OrderSpec(**{**ORDER.model_dump(), "domain": bad})


def test_unknown_fields_are_rejected_not_dropped():
    payload = OrderCreatedV1(order=ORDER).model_dump(mode="json")
    payload["order"]["surprise"] = 1
    with pytest.raises(ValidationError):
        OrderCreatedV1.model_validate(payload)


@pytest.mark.parametrize(
    "task",
    [
        {"kind": "final-backup", "tool": "ghost"},  # a field of another kind's payload
        {"kind": "restore", "order": ORDER.model_dump(), "server": SERVER.model_dump(), "backup_set": "yesterday"},
        {"kind": "tool-stack", "action": "upgrade", "tool": "ghost", "order": ORDER.model_dump(),
         "server": SERVER.model_dump()},
        {"kind": "tool-dns", "action": "add", "tool": "ghost"},  # its order and server missing
        {"kind": "reboot"},
    ],
)  # fmt: skip
def test_a_tenant_task_is_checked_against_the_payload_of_its_kind(task):
    asked = {"request_id": str(uuid.uuid4()), "job_id": str(uuid.uuid4()), "tenant_id": str(ORDER.order_id)}
    with pytest.raises(ValidationError):
        TenantTaskRequestedV1.model_validate({**asked, "attempt": 1, "task": task})


@pytest.mark.parametrize(
    ("kind", "result"),
    [
        ("stop-agents", {"last_run": "2026-12-02T08:00:00Z", "duration_seconds": 1, "databases": {},
                         "remote_sync": {"status": "skipped"}}),
        ("final-backup", {"stopped": ["safety-wrapper"]}),
        ("restore", {"stopped": ["safety-wrapper"]}),
    ],
)  # fmt: skip
def test_a_task_report_carries_only_the_result_of_its_kind(kind, result):
    report = {"request_id": str(uuid.uuid4()), "job_id": str(uuid.uuid4()), "tenant_id": str(ORDER.order_id),
              "kind": kind, "attempt": 1, "status": "SUCCEEDED"}  # fmt: skip
    with pytest.raises(ValidationError, match="does not report"):
        TenantTaskReportedV1.model_validate({**report, "result": result})
    skipped = TenantTaskReportedV1.model_validate({**report, "result": {"skipped": "never provisioned"}})
    assert skipped.result is not None  # any kind may have had nothing to do


def test_events_are_immutable():
    with pytest.raises(ValidationError):
        SAMPLES[0].order = ORDER  # type: ignore[misc]


def test_decode_refuses_unknown_type_and_version():
    env = OrderCreatedV1(order=ORDER).envelope(correlation_id="x")
    with pytest.raises(LookupError):
        decode(env.model_copy(update={"version": 99}))
    with pytest.raises(LookupError):
        decode(env.model_copy(update={"type": "order-teleported"}))


def test_envelope_requires_timezone_aware_time():
    env = OrderCreatedV1(order=ORDER).envelope(correlation_id="x").model_dump(mode="json")
    env["occurred_at"] = "2026-11-27T12:00:00"
    with pytest.raises(ValidationError):
        Envelope.model_validate(env)


def test_host_key_fingerprint_format_is_enforced():
    with pytest.raises(ValidationError):
        ServerTarget(**{**SERVER.model_dump(), "host_key_fingerprint": "MD5:aa:bb"})


# --- the published JSON Schemas (libs/contracts/schemas/events/) ------------------------------------------------


def test_checked_in_schemas_match_the_models():
    assert drift() == [], "run .venv/bin/letsbe-event-schemas and commit libs/contracts/schemas/"


def test_schema_check_reports_a_drifted_a_missing_and_a_stale_file(tmp_path, capsys):
    assert main(["--dir", str(tmp_path)]) == 0
    assert main(["--check", "--dir", str(tmp_path)]) == 0
    (tmp_path / "letsbe.order.created.v1.json").write_text("{}")
    (tmp_path / "letsbe.provisioned.v1.json").unlink()
    (tmp_path / "letsbe.order.teleported.v1.json").write_text("{}")
    assert main(["--check", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "letsbe.order.created.v1.json: differs from its model" in err
    assert "letsbe.provisioned.v1.json: missing" in err
    assert "letsbe.order.teleported.v1.json: no such event" in err


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).TYPE)
def test_real_envelopes_validate_against_the_published_schema(event):
    """What a consumer receives (the envelope's JSON bytes) passes the schema file it would download."""
    schema = json.loads((SCHEMA_DIR / f"{type(event).SUBJECT}.json").read_text())
    Draft202012Validator.check_schema(schema)
    wire = json.loads(event.envelope(correlation_id=ORDER.order_id).model_dump_json())
    Draft202012Validator(schema, format_checker=FormatChecker()).validate(wire)


def test_published_schema_refuses_what_the_model_refuses():
    validator = Draft202012Validator(event_schema(OrderCreatedV1), format_checker=FormatChecker())
    wire = json.loads(OrderCreatedV1(order=ORDER).envelope(correlation_id="c").model_dump_json())
    assert validator.is_valid(wire)
    bad = [
        {**wire, "type": "order-failed"},  # another event's envelope
        {**wire, "version": 2},
        {**wire, "payload": {"order": {**wire["payload"]["order"], "surprise": 1}}},
        {**wire, "payload": {"order": {**wire["payload"]["order"], "domain": "not a domain"}}},
        {key: value for key, value in wire.items() if key != "correlation_id"},
    ]
    for envelope in bad:
        assert not validator.is_valid(envelope), envelope
