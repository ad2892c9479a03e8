from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from letsbe_contracts.agent import ComponentName, ImageDigest, ImageRepo, Version
from letsbe_contracts.validation import RequestModel

MAX_STAGES = 10


class StageSpec(RequestModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9%_-]{0,30}$")]
    staging: bool = False  # the tenants marked as staging, instead of a share of the fleet
    percent: Annotated[float, Field(gt=0, le=100)] | None = None  # cumulative share of the (non-staging) fleet
    soak_seconds: Annotated[int, Field(ge=0, le=30 * 24 * 3600)] = 0
    max_failure_ratio: Annotated[float, Field(ge=0, le=1)] = 0.0
    requires_approval: bool = False  # an operator approves before this stage starts

    @model_validator(mode="after")
    def _one_kind(self) -> StageSpec:
        if self.staging == (self.percent is not None):
            raise ValueError("a stage is either staging: true or has a percent")
        return self


# Seed §7.4: staging 48 h → 5 % 24 h → 25 % 12 h → 100 % (with a manual approval before it).
DEFAULT_STAGES = [
    StageSpec(name="staging", staging=True, soak_seconds=48 * 3600),
    StageSpec(name="canary-5", percent=5, soak_seconds=24 * 3600),
    StageSpec(name="wide-25", percent=25, soak_seconds=12 * 3600, max_failure_ratio=0.02),
    StageSpec(name="all-100", percent=100, max_failure_ratio=0.02, requires_approval=True),
]


class RolloutCreate(RequestModel):
    model_config = ConfigDict(extra="forbid")

    component: ComponentName
    image: ImageRepo
    digest: ImageDigest
    version: Version
    stages: Annotated[list[StageSpec], Field(min_length=1, max_length=MAX_STAGES)] = DEFAULT_STAGES
    concurrency: Annotated[int, Field(ge=1, le=1000)] = 10
    rollback_on_abort: bool = False
    min_healthy_seconds: Annotated[float, Field(ge=0, le=3600)] = 30
    deadline_seconds: Annotated[float, Field(gt=0, le=7200)] = 300

    @model_validator(mode="after")
    def _percent_grows(self) -> RolloutCreate:
        last = 0.0
        for s in self.stages:
            if s.percent is not None:
                if s.percent <= last:
                    raise ValueError("stage percents must grow")
                last = s.percent
        if last != 100:
            raise ValueError("the last share stage must reach 100 percent")
        return self


class RolloutAbort(RequestModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)] = "aborted by an operator"
    rollback: bool | None = None  # default: the rollout's rollback_on_abort


class StageView(BaseModel):
    index: int
    name: str
    spec: dict[str, Any]
    targets: int
    counts: dict[str, int]


class RolloutView(BaseModel):
    id: uuid.UUID
    component: str
    agent: str
    image: str
    digest: str
    version: str
    status: str
    stage_index: int
    stage: str | None
    reason: str | None
    concurrency: int
    rollback_on_abort: bool
    created_by: str
    approved_by: str | None
    created_at: datetime
    updated_at: datetime
    stage_started_at: datetime | None
    soak_started_at: datetime | None
    finished_at: datetime | None
    stages: list[StageView]
    skipped: int


class TargetView(BaseModel):
    tenant_id: uuid.UUID
    stage: int
    position: int
    status: str
    command_id: uuid.UUID | None
    previous_digest: str | None
    previous_version: str | None
    detail: str | None
    updated_at: datetime


class RolloutEventView(BaseModel):
    id: int
    kind: str
    message: str
    data: dict[str, Any] | None
    at: datetime
