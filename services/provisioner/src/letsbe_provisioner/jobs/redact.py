"""Redaction of known secret values from every line before it leaves the provisioner (events, rows, errors)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote

MASK = "[redacted]"
MIN_LENGTH = 8  # shorter values would mask ordinary words; every secret we generate is far longer


class Redactor:
    def __init__(self, values: Iterable[str] = ()):
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(*values)

    def add(self, *values: str) -> None:
        for v in values:
            if v and len(v) >= MIN_LENGTH:
                self._values.add(v)
                self._values.add(quote(v, safe=""))  # as it appears in a URL or form body
        # Longest first, so a secret that contains another is masked whole.
        ordered = sorted(self._values, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __call__(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern else text
