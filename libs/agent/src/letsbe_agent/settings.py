"""Settings every agent has (each agent's own settings class extends this with its env prefix)."""

from __future__ import annotations

from datetime import time
from pathlib import Path

from pydantic import Field, SecretStr, model_validator

from letsbe_platform.settings import ServiceSettings


class AgentSettings(ServiceSettings):
    # Unset: the agent serves its local API only and never talks to a hub (development, unit tests of its routes).
    hub_url: str | None = None
    hub_timeout_seconds: float = Field(default=10, gt=0)
    # The credential, the command journal, unsent reports. Default: /var/lib/letsbe/<service_name>/agent.
    state_dir: Path | None = None  # always set after validation
    # The one-time token the provisioner leaves on the tenant: from the environment or from a file.
    registration_token: SecretStr | None = None
    registration_token_file: Path | None = None
    # Until the hub says otherwise (every heartbeat answer carries the interval to use).
    heartbeat_interval_seconds: float = Field(default=60, gt=0)
    heartbeat_jitter: float = Field(default=0.1, ge=0, le=0.5)  # ± this fraction of the interval
    heartbeat_details_every_seconds: float = Field(default=300, gt=0)  # the heavy part at least this often
    backoff_base_seconds: float = Field(default=1, gt=0)
    backoff_max_seconds: float = Field(default=60, gt=0)
    long_poll: bool = True
    long_poll_seconds: int = Field(default=25, ge=1, le=30)
    docker_socket: Path = Path("/var/run/docker.sock")
    docker_api_version: str = Field(default="v1.43", pattern=r"^v1\.\d+$")
    disk_path: str = "/"
    update_poll_seconds: float = Field(default=1.0, gt=0)
    # Backups (seed §8.3): backups.sh writes the status file, and holds the lock file while it runs.
    report_backups: bool = False
    backup_status_path: Path = Path("/opt/letsbe/backups/backup-status.json")
    backup_lock_path: Path = Path("/opt/letsbe/backups/backup.lock")
    backup_check_at: time = time(6, 0)
    backup_check_timezone: str = "UTC"
    # Token usage: the Secrets Proxy records into this ledger; the agent that reports usage sends it hourly.
    usage_ledger_path: Path | None = Path("/var/lib/letsbe/shared/usage.sqlite3")
    report_usage: bool = False
    usage_report_every_seconds: float = Field(default=300, gt=0)

    @model_validator(mode="after")
    def _default_state_dir(self) -> AgentSettings:
        if self.state_dir is None:
            self.state_dir = Path("/var/lib/letsbe") / self.service_name / "agent"
        return self
