from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from letsbe_contracts.validation import RequestModel

Text = Annotated[str, StringConstraints(min_length=1, max_length=320)]


class ToolCredential(RequestModel):
    model_config = ConfigDict(extra="forbid")

    tool: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,40}$")]
    title: Annotated[str, StringConstraints(min_length=1, max_length=80)]
    url: Annotated[str, StringConstraints(pattern=r"^https://[A-Za-z0-9.-]{1,253}(/[^\s]*)?$", max_length=300)]
    login: Text
    password: Annotated[str, StringConstraints(min_length=8, max_length=256)]


class CredentialsIn(RequestModel):
    """What the provisioner created on the tenant (PUT again on a re-run: replaced until revealed)."""

    model_config = ConfigDict(extra="forbid")

    credentials: list[ToolCredential] = Field(max_length=64)


class CredentialsOut(BaseModel):
    domain: str | None = None
    credentials: list[ToolCredential]
