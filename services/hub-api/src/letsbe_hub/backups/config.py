"""Settings of the tenants' off-site backups (part of HubSettings, env prefix LETSBE_HUB_)."""

from pydantic import BaseModel, Field, SecretStr


class BackupSettings(BaseModel):
    # An S3-compatible store for the tenants' off-site backup copies. Each tenant gets its own prefix in the bucket
    # and its own encryption key (rclone crypt): the hub issues both when the tenant is provisioned. Unset endpoint:
    # no off-site copies (the monitor raises backup.offsite_missing for every tenant).
    offsite_s3_endpoint: str | None = None
    offsite_s3_region: str = Field(default="eu-central-1", min_length=1, max_length=40)
    offsite_s3_bucket: str = Field(default="letsbe-tenant-backups", pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    offsite_s3_access_key_id: str | None = None
    offsite_s3_secret_access_key: SecretStr | None = None
