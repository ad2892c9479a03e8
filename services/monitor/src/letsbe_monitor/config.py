"""Monitor settings. Every rule threshold and severity is configuration, with the seed's values (§8.3, §9.1) as
defaults; ``rules`` given in the environment (JSON) are merged over the defaults rule by rule."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from letsbe_contracts.enums import AlertSeverity, Tier
from letsbe_platform.settings import ServiceSettings


class RuleConfig(BaseModel):
    """One rule: when it fires, how loud it is, and how it calms down (hysteresis)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    severity: AlertSeverity
    threshold: float | None = None
    # Hysteresis band: a firing alert clears only once the value is back past ``clear`` (default: the threshold).
    clear: float | None = None
    # ... and only after this many consecutive clear observations.
    clear_after: int = Field(default=1, ge=1, le=100)
    enabled: bool = True


SOFT, MEDIUM, HARD = AlertSeverity.SOFT, AlertSeverity.MEDIUM, AlertSeverity.HARD

# Rule names are the wire names of alerts (AlertRaisedV1.rule): never rename one.
DEFAULT_RULES: dict[str, RuleConfig] = {
    # §9.1 "> 3 missed intervals (3 min)": threshold counts missed heartbeat intervals.
    "heartbeat.stale": RuleConfig(severity=HARD, threshold=3),
    "disk.usage": RuleConfig(severity=MEDIUM, threshold=85, clear=80),
    # Memory pressure comes and goes (caches, a busy hour): dashboard only, and it must stay down to clear.
    "memory.usage": RuleConfig(severity=SOFT, threshold=90, clear=85, clear_after=2),
    # §8.3: any database backup failed → medium; all failed or backup-status.json older than 48 h → hard.
    "backup.failed": RuleConfig(severity=MEDIUM),
    "backup.all_failed": RuleConfig(severity=HARD),
    "backup.stale": RuleConfig(severity=HARD, threshold=48),  # hours
    # The off-site copy: missing (the run copied nothing off-site: no target) or its last success older
    # than the threshold. A lost VPS takes its local backups with it.
    "backup.offsite": RuleConfig(severity=MEDIUM, threshold=48),  # hours
    # §9.1 container health "Crash/OOM events": clears after 3 reports without a new crash.
    "container.crash": RuleConfig(severity=MEDIUM, clear_after=3),
    "container.oom": RuleConfig(severity=MEDIUM, clear_after=3),
    # §9.1 "SSL cert expiry < 14 days", checked on the certificate actually served.
    "tls.expiry": RuleConfig(severity=MEDIUM, threshold=14),  # days
    # §9.1 token pool 80 / 90 / 100 % of the billing period's allowance; each fires at most once per period.
    "token_pool.80": RuleConfig(severity=SOFT, threshold=80),
    "token_pool.90": RuleConfig(severity=MEDIUM, threshold=90),
    "token_pool.100": RuleConfig(severity=HARD, threshold=100),
    # Platform alerts (no tenant): many tenants silent at once, or no heartbeat reaching the monitor at all.
    "fleet.mass_offline": RuleConfig(severity=HARD),
    "heartbeat.ingest_stalled": RuleConfig(severity=HARD),
}

# Tokens per billing period (monthly). The seed gives no figures: these are placeholders to be set per plan.
DEFAULT_TOKEN_ALLOWANCE = {
    Tier.LITE: 5_000_000,
    Tier.BUILD: 15_000_000,
    Tier.SCALE: 40_000_000,
    Tier.ENTERPRISE: 100_000_000,
}


class MonitorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LETSBE_MONITOR_", env_file=".env", extra="ignore")

    service_name: str = "monitor"
    port: int = Field(default=3852, ge=1, le=65535)

    rules: dict[str, RuleConfig] = Field(default_factory=lambda: dict(DEFAULT_RULES))
    token_allowance: dict[Tier, int] = Field(default_factory=lambda: dict(DEFAULT_TOKEN_ALLOWANCE))

    # --- liveness sweep ---------------------------------------------------------------------------------------
    sweep_interval_seconds: float = Field(default=15, gt=0)
    default_heartbeat_interval_seconds: int = Field(default=60, ge=1, le=3600)
    # After the monitor starts, nobody is declared offline before this (None: one full heartbeat window).
    startup_grace_seconds: float | None = Field(default=None, ge=0)
    # A tenant is alerted individually only after it has been offline this long without the silence turning out
    # to be fleet-wide (None: one heartbeat interval) — so a mass silence becomes one incident.
    offline_settle_seconds: float | None = Field(default=None, ge=0)
    # This many unalerted offline tenants at once (at least mass_offline_min) = one fleet incident.
    mass_offline_min: int = Field(default=20, ge=1)
    mass_offline_fraction: float = Field(default=0.2, gt=0, le=1)
    # No heartbeat from any of at least mass_offline_min tenants for this long = the pipeline (hub) is down.
    ingest_gap_seconds: float = Field(default=90, gt=0)
    sweep_batch: int = Field(default=1000, ge=1)  # most alerts raised per sweep: bounds one sweep's work

    # --- alert lifecycle --------------------------------------------------------------------------------------
    # A firing alert is re-announced to the hub (last_seen, count) at most this often.
    refresh_seconds: float = Field(default=300, ge=0)
    # §9.2: a medium alert reaches the customer on its 3rd consecutive failing observation.
    medium_push_after: int = Field(default=3, ge=1)

    # --- TLS checker ------------------------------------------------------------------------------------------
    tls_check_interval_seconds: float = Field(default=6 * 3600, gt=0)
    tls_poll_seconds: float = Field(default=60, gt=0)
    tls_port: int = Field(default=443, ge=1, le=65535)
    # Connect here instead of resolving each name (SNI still carries the name): tests and the sandbox.
    tls_connect_host: str | None = None
    tls_timeout_seconds: float = Field(default=10, gt=0)
    tls_concurrency: int = Field(default=50, ge=1)
    tls_batch: int = Field(default=200, ge=1)

    # --- notification channels (a channel without its settings is simply not used) ----------------------------
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool | None = None  # None: STARTTLS when the server offers it
    smtp_use_tls: bool = False  # implicit TLS (port 465)
    smtp_timeout_seconds: float = Field(default=30, gt=0)
    mail_from: str = "LetsBe Monitor <alerts@letsbe.biz>"
    staff_emails: list[str] = []
    slack_webhook_url: SecretStr | None = None  # the URL is the credential
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    push_gateway_url: str | None = None
    push_gateway_token: SecretStr | None = None
    http_timeout_seconds: float = Field(default=10, gt=0)
    dashboard_url: str = "https://hub.letsbe.biz/admin/alerts"

    # --- delivery worker --------------------------------------------------------------------------------------
    delivery_poll_seconds: float = Field(default=1.0, gt=0)
    delivery_batch: int = Field(default=50, ge=1)
    delivery_max_attempts: int = Field(default=10, ge=1)
    delivery_backoff_base_seconds: float = Field(default=5, gt=0)
    delivery_backoff_max_seconds: float = Field(default=3600, gt=0)
    delivery_lease_seconds: float = Field(default=120, gt=0)

    @field_validator("rules", mode="before")
    @classmethod
    def _merge_rules(cls, value: Any) -> Any:
        """A partial override (one rule, or one field of a rule) keeps every other default."""
        if not isinstance(value, dict):
            return value
        merged: dict[str, Any] = {k: v.model_dump() for k, v in DEFAULT_RULES.items()}
        for name, override in value.items():
            base = merged.get(name, {})
            if isinstance(override, RuleConfig):
                override = override.model_dump(exclude_unset=True)
            merged[name] = {**base, **override} if isinstance(override, dict) else override
        return merged

    @field_validator("token_allowance", mode="before")
    @classmethod
    def _merge_allowance(cls, value: Any) -> Any:
        return {**DEFAULT_TOKEN_ALLOWANCE, **value} if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _rules_complete(self) -> MonitorSettings:
        unknown = [n for n in self.rules if n not in DEFAULT_RULES and not re.fullmatch(r"token_pool\.\d{1,3}", n)]
        if unknown:
            raise ValueError(f"unknown rule(s) {unknown}; known: {sorted(DEFAULT_RULES)} and token_pool.<percent>")
        for name in ("heartbeat.stale", "disk.usage", "memory.usage", "backup.stale", "tls.expiry"):
            if self.rules[name].threshold is None:
                raise ValueError(f"rule {name} needs a threshold")
        for name, rule in self.rules.items():
            if name.startswith("token_pool.") and rule.threshold is None:
                raise ValueError(f"rule {name} needs a threshold (percent of the allowance)")
        if any(v <= 0 for v in self.token_allowance.values()):
            raise ValueError("token allowances must be positive")
        return self

    def rule(self, name: str) -> RuleConfig:
        return self.rules[name]

    @property
    def missed_beats(self) -> float:
        return float(self.rules["heartbeat.stale"].threshold or 3)

    @property
    def heartbeat_window_seconds(self) -> float:
        """How long a tenant may stay silent at the default interval before it counts as offline."""
        return self.missed_beats * self.default_heartbeat_interval_seconds

    @property
    def startup_grace(self) -> float:
        if self.startup_grace_seconds is not None:
            return self.startup_grace_seconds
        return self.heartbeat_window_seconds + self.sweep_interval_seconds

    @property
    def offline_settle(self) -> float:
        if self.offline_settle_seconds is not None:
            return self.offline_settle_seconds
        return float(self.default_heartbeat_interval_seconds)

    @property
    def token_pool_rules(self) -> list[tuple[str, RuleConfig]]:
        found = [(n, r) for n, r in self.rules.items() if n.startswith("token_pool.") and r.enabled]
        return sorted(found, key=lambda item: item[1].threshold or 0)
