"""Imports every ORM model so Alembic and the mapper see the whole schema. Add each context's models here."""

from letsbe_provisioner.jobs.models import Job, JobStep, TenantSecret

__all__ = ["Job", "JobStep", "TenantSecret"]
