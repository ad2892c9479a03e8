"""The relay's frames (one JSON object per WebSocket text message; docs/api.md, "Chat relay") and its admin API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from letsbe_contracts.validation import RequestModel

# A sender's own id for a message: the same id sent again (after a reconnect) is the same message, relayed once.
ClientId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
RelayId = Annotated[int, Field(ge=0)]


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Hello(_Frame):
    """The first frame of a connection. ``after``: the last message id this side has received (resume after it);
    None: only messages relayed from now on."""

    type: Literal["hello"]
    after: RelayId | None = None


class Send(_Frame):
    type: Literal["message"]
    id: ClientId
    text: str = Field(min_length=1)
    reply_to: RelayId | None = None  # the id of the message this answers (the tenant's agent sets it)


class Ack(_Frame):
    """Everything up to and including message ``id`` has been received."""

    type: Literal["ack"]
    id: RelayId


ClientFrame = Annotated[Hello | Send | Ack, Field(discriminator="type")]
CLIENT_FRAME: TypeAdapter[Hello | Send | Ack] = TypeAdapter(ClientFrame)


class RelayedMessage(BaseModel):
    """What the hub keeps in JetStream for one relayed message (the id is its stream sequence)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    client_id: str
    text: str
    reply_to: int | None = None
    sent_at: datetime


class IssuedAppToken(BaseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    label: str
    token: str = Field(description="The app token (lbc_…), shown once; the hub keeps only its hash.")
    created_at: datetime


class AppTokenCreate(RequestModel):
    model_config = ConfigDict(extra="forbid")
    label: str = Field(default="app", min_length=1, max_length=100, description="Which app or device it is for.")
