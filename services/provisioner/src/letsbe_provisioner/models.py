"""Imports every ORM model so Alembic and the mapper see the whole schema. Add each context's models here."""

__all__: list[str] = []
