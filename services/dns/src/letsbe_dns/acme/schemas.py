from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, StringConstraints

from letsbe_contracts.events import DomainName
from letsbe_contracts.validation import RequestModel


def _strip_wildcard(value: object) -> object:
    # certbot passes the base name for "*.example.com" already; accept the starred form too.
    return value.strip().removeprefix("*.") if isinstance(value, str) else value


class AcmeChallenge(RequestModel):
    """What certbot's hooks know: CERTBOT_DOMAIN and CERTBOT_VALIDATION."""

    model_config = ConfigDict(extra="forbid")

    domain: Annotated[DomainName, BeforeValidator(_strip_wildcard)]
    # base64url(SHA-256(key authorization)): 43 characters; a little slack for other ACME clients.
    validation: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{16,128}$")]


class AcmeChallengeRecord(BaseModel):
    name: str
    content: str
    record_id: str
    visible: bool
