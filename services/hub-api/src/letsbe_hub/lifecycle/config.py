"""Settings of the lifecycle jobs (part of HubSettings, env prefix LETSBE_HUB_)."""

from pydantic import BaseModel, Field


class LifecycleSettings(BaseModel):
    # Decommission: the server and its data stay this long after the request, for the customer's export; then
    # the Hetzner server is deleted (a Netcup pool server is drained for a wipe).
    decommission_export_window_hours: float = Field(default=14 * 24, ge=0)
    # Daily VPS snapshots (seed §8.1: daily, staggered, 3 rolling).
    snapshots_enabled: bool = True
    snapshots_keep: int = Field(default=3, ge=1, le=30)
    snapshot_schedule_seconds: float = Field(default=300, gt=0)  # how often the day's snapshot jobs are planned
    # The job runner: how often it looks for due jobs, how long a claimed job's lease lasts (renewed while it
    # runs; a killed worker's job is picked up after it lapses), and retries of a failing step.
    lifecycle_poll_seconds: float = Field(default=5, gt=0)
    lifecycle_lease_seconds: float = Field(default=120, gt=0)
    lifecycle_max_attempts: int = Field(default=5, ge=1)
    lifecycle_retry_seconds: float = Field(default=60, gt=0)  # doubled per failed attempt, capped at 1 h
    # A tool-change phase (DNS record, final backup, stack) not reported within this time is asked for again.
    tool_change_phase_timeout_seconds: float = Field(default=900, gt=0)
