"""Versioned event models and the envelope that carries them over NATS.

An event class names its wire identity once: ``TYPE`` (e.g. ``order-created``), ``VERSION`` and ``SUBJECT``
(``letsbe.order.created.v1``). A breaking change is a new class with ``VERSION + 1`` and a new subject, so old and
new consumers can run side by side during a deploy.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from ipaddress import IPv4Address, IPv6Address
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, model_validator

from letsbe_contracts.enums import (
    AgentKind,
    AlertSeverity,
    AutomationMode,
    FailureStage,
    OrderStatus,
    Provider,
    Region,
    StepStatus,
    Tier,
)

SUBJECT_ROOT = "letsbe"


def _normalise_domain(value: object) -> object:
    return value.strip().lower().removesuffix(".") if isinstance(value, str) else value


# A fully qualified domain name the customer owns, lower case, no trailing dot.
DomainName = Annotated[
    str,
    BeforeValidator(_normalise_domain),
    StringConstraints(
        max_length=253,
        pattern=r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$",
    ),
]
# The end of domain names, whole labels: "example.com" (itself and its subdomains), or a TLD such as "de".
DomainSuffix = Annotated[
    str,
    BeforeValidator(_normalise_domain),
    StringConstraints(
        max_length=253,
        pattern=r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z]([a-z0-9-]{0,61}[a-z0-9])?$",
    ),
]
ToolName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,40}$")]
# "SHA256:<base64>" as printed by ssh-keygen -lf and asyncssh's get_fingerprint().
HostKeyFingerprint = Annotated[str, StringConstraints(pattern=r"^SHA256:[A-Za-z0-9+/]{43}$")]


class Model(BaseModel):
    """Frozen and strict about unknown fields: a typo on the wire is an error, not a silently dropped value."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Event(Model):
    TYPE: ClassVar[str]
    VERSION: ClassVar[int]
    SUBJECT: ClassVar[str]

    def envelope(
        self,
        *,
        correlation_id: str | uuid.UUID,
        event_id: uuid.UUID | None = None,
        occurred_at: datetime | None = None,
    ) -> Envelope:
        return Envelope(
            id=event_id or uuid.uuid4(),
            type=self.TYPE,
            version=self.VERSION,
            occurred_at=occurred_at or datetime.now(UTC),
            correlation_id=str(correlation_id),
            payload=self.model_dump(mode="json"),
        )


class Envelope(Model):
    id: uuid.UUID
    type: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]+$")]
    version: Annotated[int, Field(ge=1)]
    occurred_at: AwareDatetime
    correlation_id: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    payload: dict[str, Any]


EVENT_TYPES: dict[tuple[str, int], type[Event]] = {}


def register(cls: type[Event]) -> type[Event]:
    """Class decorator: record the event so envelopes can be decoded by (type, version)."""
    key = (cls.TYPE, cls.VERSION)
    if key in EVENT_TYPES:
        raise ValueError(f"event {key} registered twice")
    expected = f"{SUBJECT_ROOT}.{cls.TYPE.replace('-', '.')}.v{cls.VERSION}"
    if cls.SUBJECT != expected:
        raise ValueError(f"{cls.__name__}.SUBJECT must be {expected!r}")
    EVENT_TYPES[key] = cls
    return cls


def decode(envelope: Envelope) -> Event:
    """The typed event inside an envelope; raises LookupError for an unknown type, ValidationError for bad data."""
    try:
        cls = EVENT_TYPES[(envelope.type, envelope.version)]
    except KeyError:
        raise LookupError(f"unknown event type {envelope.type!r} version {envelope.version}") from None
    return cls.model_validate(envelope.payload)


# --- shared payload parts ------------------------------------------------------------------------------------


class ServerTarget(Model):
    """Everything a worker needs to reach an allocated VPS; travels with the order through the events."""

    server_id: uuid.UUID
    provider: Provider
    provider_ref: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    ipv4: IPv4Address
    ipv6: IPv6Address | None = None
    ssh_port: Annotated[int, Field(ge=1, le=65535)] = 22
    ssh_user: Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")] = "letsbe"
    host_key_fingerprint: HostKeyFingerprint


class DnsRecordRef(Model):
    type: Literal["A", "AAAA", "CNAME", "MX", "TXT", "SRV"]
    name: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    content: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    record_id: str | None = None


class OrderSpec(Model):
    """What the customer bought; copied into the events so no service reads another's schema."""

    order_id: uuid.UUID
    domain: DomainName
    tier: Tier
    region: Region
    tools: tuple[ToolName, ...]
    automation_mode: AutomationMode
    customer_email: Annotated[str, StringConstraints(max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
    cloudflare_zone_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")] | None = None


# --- the four backbone events ---------------------------------------------------------------------------------


@register
class OrderCreatedV1(Event):
    TYPE: ClassVar[str] = "order-created"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "letsbe.order.created.v1"

    order: OrderSpec


@register
class ServerAllocatedV1(Event):
    TYPE: ClassVar[str] = "server-allocated"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "letsbe.server.allocated.v1"

    order: OrderSpec
    server: ServerTarget


@register
class DnsReadyV1(Event):
    TYPE: ClassVar[str] = "dns-ready"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "letsbe.dns.ready.v1"

    order: OrderSpec
    server: ServerTarget
    records: tuple[DnsRecordRef, ...]


@register
class ProvisionedV1(Event):
    TYPE: ClassVar[str] = "provisioned"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "letsbe.provisioned.v1"

    order: OrderSpec
    server: ServerTarget
    tenant_id: uuid.UUID
    job_id: uuid.UUID
    duration_seconds: Annotated[float, Field(ge=0)]


@register
class MailReadyV1(Event):
    """The tenant's mail server (Stalwart) runs behind open mail ports and signs with this DKIM key: now, and only
    now, the domain's mail records (MX, SPF, DKIM, DMARC, …) may be published. Emitted with ``provisioned``."""

    TYPE: ClassVar[str] = "mail-ready"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "letsbe.mail.ready.v1"

    order: OrderSpec
    server: ServerTarget
    tenant_id: uuid.UUID
    dkim_selector: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    # The p= value of the DKIM TXT record: the base64 DER SubjectPublicKeyInfo of an RSA key.
    dkim_public_key: Annotated[
        str, StringConstraints(pattern=r"^[A-Za-z0-9+/]+={0,2}$", min_length=200, max_length=800)
    ]
    dkim_algorithm: Literal["rsa"] = "rsa"


# --- failures and progress ------------------------------------------------------------------------------------


@register
class OrderFailedV1(Event):
    TYPE: ClassVar[str] = "order-failed"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "letsbe.order.failed.v1"

    order_id: uuid.UUID
    stage: FailureStage
    reason: Annotated[str, StringConstraints(min_length=1, max_length=4000)]
    retryable: bool
    step: Annotated[int, Field(ge=1, le=10)] | None = None


@register
class ProvisioningStepV1(Event):
    TYPE: ClassVar[str] = "provisioning-step"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "letsbe.provisioning.step.v1"

    order_id: uuid.UUID
    job_id: uuid.UUID
    step: Annotated[int, Field(ge=1, le=10)]
    name: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{1,40}$")]
    status: StepStatus
    attempt: Annotated[int, Field(ge=1)]
    exit_code: int | None = None
    error: Annotated[str, StringConstraints(max_length=4000)] | None = None


@register
class ProvisioningLogV1(Event):
    TYPE: ClassVar[str] = "provisioning-log"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "letsbe.provisioning.log.v1"

    order_id: uuid.UUID
    job_id: uuid.UUID
    step: Annotated[int, Field(ge=1, le=10)]
    seq: Annotated[int, Field(ge=0)]  # per job, strictly increasing: consumers order and de-duplicate by it
    stream: Literal["stdout", "stderr"]
    line: Annotated[str, StringConstraints(max_length=8000)]  # already redacted by the provisioner


# --- tenants and alerts ---------------------------------------------------------------------------------------


class DiskUsage(Model):
    path: str = "/"
    total_bytes: Annotated[int, Field(ge=0)]
    used_bytes: Annotated[int, Field(ge=0)]
    percent: Annotated[float, Field(ge=0, le=100)]


class MemoryUsage(Model):
    total_bytes: Annotated[int, Field(ge=0)]
    available_bytes: Annotated[int, Field(ge=0)]
    percent: Annotated[float, Field(ge=0, le=100)]


class ContainerState(Model):
    name: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    image: Annotated[str, StringConstraints(max_length=500)]
    image_digest: Annotated[str, StringConstraints(max_length=200)] | None = None
    state: Annotated[str, StringConstraints(max_length=40)]  # docker: created/running/restarting/exited/...
    health: Literal["healthy", "unhealthy", "starting", "none"] = "none"
    restart_count: Annotated[int, Field(ge=0)] = 0
    oom_killed: bool = False


class BackupDatabaseStatus(Model):
    status: Literal["success", "failed"]
    size_mb: Annotated[float, Field(ge=0)] | None = None
    error: Annotated[str, StringConstraints(max_length=2000)] | None = None


class RemoteSyncStatus(Model):
    status: Literal["success", "failed", "skipped"]
    uploaded_mb: Annotated[float, Field(ge=0)] | None = None
    error: Annotated[str, StringConstraints(max_length=2000)] | None = None


class BackupStatus(Model):
    """The seed's §8.3 `backup-status.json`, exactly."""

    last_run: AwareDatetime
    duration_seconds: Annotated[float, Field(ge=0)]
    databases: dict[str, BackupDatabaseStatus]
    remote_sync: RemoteSyncStatus


class HeartbeatDetails(Model):
    """The heavy part of a heartbeat: sent when it changed or every few minutes."""

    disk: DiskUsage
    memory: MemoryUsage
    containers: tuple[ContainerState, ...] = ()
    versions: dict[str, str] = {}
    backup: BackupStatus | None = None
    tls_not_after: AwareDatetime | None = None


@register
class TenantAgentRegisteredV1(Event):
    """An agent enrolled with the hub (its first registration, or a re-enrolment that replaced the previous agent of
    its kind). The provisioner waits for the Safety Wrapper's before it reports the tenant provisioned."""

    TYPE: ClassVar[str] = "tenant-agent-registered"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "letsbe.tenant.agent.registered.v1"

    tenant_id: uuid.UUID
    order_id: uuid.UUID
    agent_id: uuid.UUID
    agent: AgentKind


@register
class TenantHeartbeatV1(Event):
    TYPE: ClassVar[str] = "tenant-heartbeat"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "letsbe.tenant.heartbeat.v1"

    tenant_id: uuid.UUID
    agent_id: uuid.UUID
    agent: AgentKind
    domain: DomainName
    received_at: AwareDatetime
    interval_seconds: Annotated[int, Field(ge=1, le=3600)]
    details: HeartbeatDetails | None = None


@register
class AlertRaisedV1(Event):
    TYPE: ClassVar[str] = "alert-raised"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "letsbe.alert.raised.v1"

    alert_id: uuid.UUID
    tenant_id: uuid.UUID | None  # None for platform alerts (pool below minimum, hub health)
    rule: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.-]{1,80}$")]
    severity: AlertSeverity
    summary: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    value: float | None = None
    threshold: float | None = None
    first_seen: AwareDatetime
    last_seen: AwareDatetime
    count: Annotated[int, Field(ge=1)] = 1


@register
class AlertResolvedV1(Event):
    TYPE: ClassVar[str] = "alert-resolved"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "letsbe.alert.resolved.v1"

    alert_id: uuid.UUID
    tenant_id: uuid.UUID | None
    rule: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.-]{1,80}$")]
    resolved_at: AwareDatetime
    summary: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


@register
class DeadLetteredV1(Event):
    """A message a consumer could not handle; published by the bus itself so failures are visible, not lost."""

    TYPE: ClassVar[str] = "dead-lettered"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "letsbe.dead.lettered.v1"

    consumer: str
    original_subject: str
    error: Annotated[str, StringConstraints(max_length=4000)]
    deliveries: Annotated[int, Field(ge=1)]
    event_id: uuid.UUID | None = None  # None when the message was not even a valid envelope
    event_type: str | None = None
    correlation_id: str | None = None
    raw: Annotated[str, StringConstraints(max_length=8000)]  # the original bytes, decoded leniently, truncated


ORDER_STATUSES_FINAL = frozenset({OrderStatus.FULFILLED, OrderStatus.CANCELLED})


# --- tenant reports: staged through the hub's outbox, so none is lost ---------------------------------


@register
class TenantBackupReportedV1(Event):
    """The Safety Wrapper's daily reading of backup-status.json (seed §8.3); ``status`` None = missing/unreadable."""

    TYPE: ClassVar[str] = "tenant-backup-reported"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "letsbe.tenant.backup.reported.v1"

    tenant_id: uuid.UUID
    agent_id: uuid.UUID
    domain: DomainName
    report_date: date
    checked_at: AwareDatetime
    status: BackupStatus | None = None
    problem: Annotated[str, StringConstraints(max_length=2000)] | None = None


class UsageTotals(Model):
    model: Annotated[str, StringConstraints(min_length=1, max_length=120)]
    tokens_in: Annotated[int, Field(ge=0)]
    tokens_out: Annotated[int, Field(ge=0)]
    requests: Annotated[int, Field(ge=0)]


@register
class TenantUsageReportedV1(Event):
    """Token usage of one tenant-hour; (tenant_id, hour, sequence) is unique, later sequences add to earlier ones."""

    TYPE: ClassVar[str] = "tenant-usage-reported"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "letsbe.tenant.usage.reported.v1"

    tenant_id: uuid.UUID
    hour: AwareDatetime
    sequence: Annotated[int, Field(ge=0)]
    lines: tuple[UsageTotals, ...]


# --- operator actions on alerts: the hub's admin API tells the monitor, which routes notifications ---


@register
class AlertAcknowledgedV1(Event):
    """An operator took an alert in hand: the monitor sends no more staff notifications for it (resolve still does)."""

    TYPE: ClassVar[str] = "alert-acknowledged"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "letsbe.alert.acknowledged.v1"

    alert_id: uuid.UUID
    acknowledged_by: Annotated[str, StringConstraints(min_length=1, max_length=120)]
    acknowledged_at: AwareDatetime
    note: Annotated[str, StringConstraints(max_length=2000)] | None = None


@register
class AlertSilencedV1(Event):
    """No notifications for the alert's (tenant, rule) until ``silenced_until``; None lifts the silence."""

    TYPE: ClassVar[str] = "alert-silenced"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "letsbe.alert.silenced.v1"

    alert_id: uuid.UUID
    silenced_until: AwareDatetime | None
    silenced_by: Annotated[str, StringConstraints(min_length=1, max_length=120)]
    silenced_at: AwareDatetime


# --- order lifecycle: every state-machine transition, for the SSE stream and anyone who follows orders ---


@register
class OrderStatusChangedV1(Event):
    """One transition of the hub's order state machine; ``from_status`` is None when the order was created."""

    TYPE: ClassVar[str] = "order-status-changed"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "letsbe.order.status.changed.v1"

    order_id: uuid.UUID
    from_status: OrderStatus | None
    to_status: OrderStatus
    actor: Annotated[str, StringConstraints(min_length=1, max_length=120)]
    reason: Annotated[str, StringConstraints(max_length=4000)] | None = None
    failed_stage: FailureStage | None = None  # set when to_status is FAILED


# --- tenant removal: services release what they hold for the tenant (the DNS service: its records) ---


@register
class TenantDecommissionedV1(Event):
    """A tenant is being removed; each service releases its resources for it (idempotently)."""

    TYPE: ClassVar[str] = "tenant-decommissioned"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "letsbe.tenant.decommissioned.v1"

    tenant_id: uuid.UUID
    domain: DomainName
    reason: Annotated[str, StringConstraints(max_length=2000)] | None = None


# --- tenant lifecycle jobs: decommission, daily snapshots ---


@register
class LifecycleJobChangedV1(Event):
    """One transition of a hub lifecycle job (``kind``: decommission | snapshot); ``from_status`` None = created."""

    TYPE: ClassVar[str] = "lifecycle-job-changed"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "letsbe.lifecycle.job.changed.v1"

    job_id: uuid.UUID
    kind: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z-]{1,19}$")]
    tenant_id: uuid.UUID
    from_status: Annotated[str, StringConstraints(max_length=30)] | None
    to_status: Annotated[str, StringConstraints(min_length=1, max_length=30)]
    actor: Annotated[str, StringConstraints(min_length=1, max_length=120)]
    reason: Annotated[str, StringConstraints(max_length=4000)] | None = None


# --- server pool: the monthly check finds overflow tenants that could move to a Netcup pool server ---


@register
class ServerMigrationProposedV1(Event):
    """A tenant runs on a Hetzner overflow server while a Netcup server of its tier and region is AVAILABLE.

    A proposal only (seed §6.2: "migrated to Netcup RS when next contract cycle opens"); executing it is an
    operator's decision. At most one per tenant per ``period`` (YYYY-MM).
    """

    TYPE: ClassVar[str] = "server-migration-proposed"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "letsbe.server.migration.proposed.v1"

    proposal_id: uuid.UUID
    period: Annotated[str, StringConstraints(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")]
    tenant_id: uuid.UUID
    tier: Tier
    region: Region
    from_server_id: uuid.UUID  # the Hetzner server the tenant is on
    to_server_id: uuid.UUID  # the AVAILABLE Netcup server it could move to
    monthly_saving_eur: Annotated[float, Field(ge=0)]


# --- tenant key rotation: the hub hands a rotate-credential command for an AI-stack key to the provisioner,
# which reports back how it went (the hub moves the command along; the command is the tenant's audit record) ---


@register
class TenantKeyRotationRequestedV1(Event):
    """An operator asked for a new value of one of the tenant's AI-stack keys (a queued rotate-credential command)."""

    TYPE: ClassVar[str] = "tenant-key-rotation-requested"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "letsbe.tenant.key.rotation.requested.v1"

    command_id: uuid.UUID  # the hub's command: the idempotency key of the rotation
    tenant_id: uuid.UUID
    key: Literal["tools-token", "sentinel-key", "secrets-key"]
    requested_by: Annotated[str, StringConstraints(min_length=1, max_length=120)]
    expires_at: AwareDatetime  # not started by then: it is not run


@register
class TenantKeyRotationReportedV1(Event):
    """How a key rotation went: RUNNING when the provisioner takes it, then SUCCEEDED or FAILED (with the reason)."""

    TYPE: ClassVar[str] = "tenant-key-rotation-reported"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "letsbe.tenant.key.rotation.reported.v1"

    command_id: uuid.UUID
    tenant_id: uuid.UUID
    key: Literal["tools-token", "sentinel-key", "secrets-key"]
    status: Literal["RUNNING", "SUCCEEDED", "FAILED"]
    recreated: tuple[Annotated[str, StringConstraints(max_length=60)], ...] = ()  # the containers recreated
    error: Annotated[str, StringConstraints(max_length=4000)] | None = None


# --- work on a live tenant's server for the hub's lifecycle jobs: one exchange. A job asks for one task (``kind``
# and its payload) of the service that owns it — the provisioner over SSH, the DNS service for records — which
# reports back. Each ask is a new ``request_id`` (the envelope's id too); the hub acts on the report of its latest ---


class DecommissionTask(Model):
    """A decommission's: ``final-backup`` (one last run of the tenant's backup, kept apart from the rotation, taken
    once per job) or ``stop-agents`` (the AI agent, the Safety Wrapper and the Secrets Proxy stopped)."""

    kind: Literal["final-backup", "stop-agents"]


class ServerOperation(Model):
    """A restore's, recovery's or migration's, on ``server``: ``provision`` the tenant there, ``backup`` (with
    ``stop_tools`` the tools stop first and stay stopped: a migration's source), ``restore`` a ``backup_set`` (one
    ``tool``, or every tool), ``verify`` that every tool answers; ``switch-dns`` (the DNS service's) moves the
    tenant's records to ``server``."""

    kind: Literal["provision", "backup", "restore", "verify", "switch-dns"]
    order: OrderSpec
    server: ServerTarget
    backup_set: Annotated[str, StringConstraints(pattern=r"^(latest|\d{4}-\d{2}-\d{2})$")] | None = None
    tool: ToolName | None = None
    stop_tools: bool = False


class ToolChangeTask(Model):
    """A tool-change job's phase: ``tool-dns`` (the DNS service's: the tool's subdomain record where the zone has no
    wildcard), ``tool-backup`` (the tool's data kept) and ``tool-stack`` (its stack, vhost, backup config and the
    Safety Wrapper's routes rendered and run). ``order`` carries the tools as they are after the change."""

    kind: Literal["tool-dns", "tool-backup", "tool-stack"]
    action: Literal["add", "remove"]
    tool: ToolName
    order: OrderSpec
    server: ServerTarget


TenantTask = Annotated[DecommissionTask | ServerOperation | ToolChangeTask, Field(discriminator="kind")]
TenantTaskKind = Literal[
    "final-backup", "stop-agents", "provision", "backup", "restore", "verify", "switch-dns", "tool-dns", "tool-backup",
    "tool-stack",
]  # fmt: skip


@register
class TenantTaskRequestedV1(Event):
    TYPE: ClassVar[str] = "tenant-task-requested"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "letsbe.tenant.task.requested.v1"

    request_id: uuid.UUID  # this ask: what its owner does once (a repeat of the event only reports again)
    job_id: uuid.UUID  # the hub's lifecycle job
    tenant_id: uuid.UUID
    attempt: Annotated[int, Field(ge=1)]  # the job's nth ask of this kind
    task: TenantTask

    def report(
        self,
        status: Literal["SUCCEEDED", "FAILED"],
        started_at: datetime,
        *,
        detail: str | None = None,
        changes: list[str] | tuple[str, ...] = (),
        result: TaskResult | None = None,
    ) -> TenantTaskReportedV1:
        """The owner's report of this ask, finished now, within the report's limits (the end of a long detail, the
        last 50 changes); staged under ``report_event_id`` so a repeat stages it once."""
        return TenantTaskReportedV1(
            request_id=self.request_id, job_id=self.job_id, tenant_id=self.tenant_id, kind=self.task.kind,
            attempt=self.attempt, status=status, started_at=started_at, finished_at=datetime.now(UTC),
            detail=detail[-4000:] if detail else None, changes=tuple(c[:300] for c in list(changes)[-50:]),
            result=result,
        )  # fmt: skip

    @property
    def report_event_id(self) -> uuid.UUID:
        return uuid.uuid5(self.request_id, "reported")


class AgentsStopped(Model):
    """``stop-agents``' result: the agents' services it stopped."""

    stopped: Annotated[tuple[Annotated[str, StringConstraints(max_length=100)], ...], Field(max_length=20)]


class TaskSkipped(Model):
    """A task with nothing to do on the server (e.g. no backup script: never provisioned), and why."""

    skipped: Annotated[str, StringConstraints(max_length=300)]


# What a server task's script reports (its ``LETSBE-RESULT`` line, read over SSH from the tenant's server).
TaskResult = BackupStatus | AgentsStopped | TaskSkipped
# Which result each kind of task may report besides a skip (the other kinds report none).
RESULTS_OF_KIND: dict[str, type[Model]] = {"final-backup": BackupStatus, "stop-agents": AgentsStopped}


def fits_kind(result: TaskResult, kind: str) -> bool:
    return isinstance(result, TaskSkipped) or type(result) is RESULTS_OF_KIND.get(kind)


@register
class TenantTaskReportedV1(Event):
    """How a task went: ``detail`` what it did (e.g. the backup set) or why it failed, ``changes`` what it changed
    (files, records, stacks), ``result`` a final backup's status JSON (seed §8.3), the agents stopped, or why it had
    nothing to do."""

    TYPE: ClassVar[str] = "tenant-task-reported"
    VERSION: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = "letsbe.tenant.task.reported.v1"

    request_id: uuid.UUID
    job_id: uuid.UUID
    tenant_id: uuid.UUID
    kind: TenantTaskKind
    attempt: Annotated[int, Field(ge=1)]
    status: Literal["SUCCEEDED", "FAILED"]
    started_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    detail: Annotated[str, StringConstraints(max_length=4000)] | None = None
    changes: tuple[Annotated[str, StringConstraints(max_length=300)], ...] = ()
    result: TaskResult | None = None

    @model_validator(mode="after")
    def _result_fits_the_kind(self) -> TenantTaskReportedV1:
        if self.result is not None and not fits_kind(self.result, self.kind):
            raise ValueError(f"a {self.kind} task does not report a {type(self.result).__name__}")
        return self
