"""Input every request model shares: no control characters in any text, whatever the field.

A NUL in a text column is an error Postgres raises at write time (a 500); other C0 characters and DEL have no place
in names, reasons or domains and only hide things from whoever reads them later. Tab, newline and carriage return
stay allowed (free-text reasons and notes may have lines).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, field_validator

CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def reject_control_characters(value: Any) -> Any:
    """``value`` unchanged, or ValueError if any string in it (keys and items of containers too) has one."""
    if isinstance(value, str):
        if CONTROL_CHARACTERS.search(value):
            raise ValueError("control characters (NUL and the like) are not allowed in text")
    elif isinstance(value, dict):
        for k, v in value.items():
            reject_control_characters(k)
            reject_control_characters(v)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            reject_control_characters(item)
    elif isinstance(value, BaseModel) and not isinstance(value, RequestModel):  # a RequestModel checked itself
        reject_control_characters(value.__dict__)
    return value


# For a single text outside a request model (a query parameter, a provider's payload field).
SafeText = Annotated[str, AfterValidator(reject_control_characters)]


class RequestModel(BaseModel):
    """Base of every request body model: each field, at any depth, is free of control characters."""

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: Any) -> Any:
        return reject_control_characters(value)
