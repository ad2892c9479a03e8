"""Imports every ORM model so Alembic and the mapper see the whole schema. Add each context's models here."""

from letsbe_dns.records.models import ManagedRecord

__all__: list[str] = ["ManagedRecord"]
