"""The hub's HTTP answers that other services read: only the fields they rely on, extra fields ignored so the hub
may add some. The hub's own response models (``letsbe_hub.tenants.schemas``) are supersets of these."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict

from letsbe_contracts.events import DomainName


class AgentPrincipal(BaseModel):
    """GET /api/v1/tenant/me: the agent a credential belongs to (read by the DNS service)."""

    model_config = ConfigDict(extra="ignore")

    tenant_id: uuid.UUID
    agent_id: uuid.UUID
    agent: str
    domain: DomainName


class RegistrationToken(BaseModel):
    """POST /api/v1/admin/tenants/{id}/registration-tokens (read by the provisioner)."""

    model_config = ConfigDict(extra="ignore")
    token: str
    expires_at: str | None = None


class LlmKey(BaseModel):
    """POST /api/v1/admin/tenants/{id}/llm-key (read by the provisioner)."""

    model_config = ConfigDict(extra="ignore")
    key: str


class TenantAgent(BaseModel):
    model_config = ConfigDict(extra="ignore")
    agent: str
    registered_at: str | None = None


class TenantStatus(BaseModel):
    """GET /api/v1/admin/tenants/{id} (read by the provisioner)."""

    model_config = ConfigDict(extra="ignore")
    tenant_id: uuid.UUID
    agents: list[TenantAgent] = []

    def registered(self, agent: str) -> bool:
        return any(a.agent == agent and a.registered_at for a in self.agents)


class BackupTarget(BaseModel):
    """POST /api/v1/admin/tenants/{id}/backup-target (read by the provisioner): an S3-compatible bucket prefix, and
    the tenant's own key its copies are encrypted with (rclone crypt)."""

    model_config = ConfigDict(extra="ignore")
    endpoint: str
    region: str
    bucket: str
    prefix: str
    access_key_id: str
    secret_access_key: str
    crypt_password: str
    crypt_salt: str
