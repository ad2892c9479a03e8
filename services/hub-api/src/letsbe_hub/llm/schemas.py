from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field


class IssuedLlmKey(BaseModel):
    key: str = Field(description="The tenant's relay key (lbl_…), shown once; the hub keeps only its hash.")
    previous_valid_until: datetime | None = Field(
        description="Until when the tenant's previous key keeps working (None: it had none)."
    )


class LlmUsageLine(BaseModel):
    hour: datetime
    model: str
    tokens_in: int
    tokens_out: int
    requests: int


class LlmUsageView(BaseModel):
    tenant_id: uuid.UUID
    since: datetime
    tokens_in: int
    tokens_out: int
    requests: int
    lines: list[LlmUsageLine]
