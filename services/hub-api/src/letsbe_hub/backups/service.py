"""Issuing a tenant's off-site backup target (once; asked again, the same target is handed out).

The target is a prefix of the platform's S3-compatible bucket, copied to through an rclone ``crypt`` remote whose
password and salt the hub generates per tenant: what lands off-site is encrypted with the tenant's own key, and the
hub keeps that key (for a restore) sealed at rest under a Fernet key derived for the tenant from ``credentials_key``
(HKDF, the tenant id as context), so one tenant's row opens with no other tenant's key.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts.hub import BackupTarget as BackupTargetOut
from letsbe_hub.backups.models import BackupTarget
from letsbe_hub.config import HubSettings
from letsbe_platform.errors import Conflict
from letsbe_platform.logging import get_logger

log = get_logger(__name__)


class OffsiteNotConfigured(Conflict):
    type, title = "offsite-not-configured", "No off-site backup storage is configured"


def tenant_box(settings: HubSettings, tenant_id: uuid.UUID) -> Fernet:
    """The Fernet key of this tenant's sealed backup secrets, derived from the hub's credentials key."""
    if settings.credentials_key is None:
        raise OffsiteNotConfigured("The hub has no credentials_key to seal backup keys with.")
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"letsbe-backup-target:" + tenant_id.bytes).derive(
        settings.credentials_key.get_secret_value().encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


async def issue(session: AsyncSession, tenant_id: uuid.UUID, settings: HubSettings) -> BackupTargetOut:
    """The tenant's target, created the first time (one row per tenant: concurrent first asks make one)."""
    s3_secret = settings.offsite_s3_secret_access_key
    if not settings.offsite_s3_endpoint or not settings.offsite_s3_access_key_id or s3_secret is None:
        raise OffsiteNotConfigured("No off-site backup storage is configured (LETSBE_HUB_OFFSITE_S3_*).")
    box = tenant_box(settings, tenant_id)
    secret = {
        "access_key_id": settings.offsite_s3_access_key_id,
        "secret_access_key": s3_secret.get_secret_value(),
        "crypt_password": secrets.token_urlsafe(32),
        "crypt_salt": secrets.token_urlsafe(32),
    }
    await session.execute(
        insert(BackupTarget)
        .values(
            tenant_id=tenant_id,
            endpoint=settings.offsite_s3_endpoint,
            region=settings.offsite_s3_region,
            bucket=settings.offsite_s3_bucket,
            prefix=f"tenants/{tenant_id}",
            sealed=box.encrypt(json.dumps(secret).encode()).decode(),
        )
        .on_conflict_do_nothing(index_elements=["tenant_id"])
    )
    row = await session.get(BackupTarget, tenant_id, populate_existing=True)
    assert row is not None
    opened = json.loads(box.decrypt(row.sealed.encode()))
    log.info("backup target issued", tenant_id=str(tenant_id), bucket=row.bucket, prefix=row.prefix)
    return BackupTargetOut(endpoint=row.endpoint, region=row.region, bucket=row.bucket, prefix=row.prefix, **opened)
