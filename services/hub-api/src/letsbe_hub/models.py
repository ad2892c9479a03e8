"""Imports every ORM model so Alembic and the mapper see the whole schema. Add each context's models here."""

from letsbe_hub.auth.models import ApiToken

__all__ = ["ApiToken"]
