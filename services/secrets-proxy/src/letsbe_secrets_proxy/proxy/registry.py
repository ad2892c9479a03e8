"""The tenant's secret registry: the values the proxy must never let reach the model.

It reads the tenant's encrypted secret store — the same file and Fernet key the Safety Wrapper uses
(``letsbe_agent.secret_store``) — and adds the proxy's own
secrets (the real upstream key, the agent's sentinel). The file is re-read when it changes, checked at most once a
second, and the redactor rebuilt.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from letsbe_agent import memory, secret_store
from letsbe_platform.logging import get_logger
from letsbe_secrets_proxy.proxy.redact import Action, Redactor

log = get_logger(__name__)


def read_store(path: Path, key: str) -> dict[str, str]:
    return {name: entry.value for name, entry in secret_store.read(path, key)[0].items()}


def write_store(path: Path, key: str, secrets: Mapping[str, str]) -> None:
    """For tests and the benchmark (the Safety Wrapper's CLI is how operators write it)."""
    secret_store.write(path, key, secret_store.values(secrets))


class Registry:
    def __init__(self, path: Path | None, key: str | None, own: Mapping[str, str],
                 policy: Mapping[str, Action] | None = None, check_every: float = 1.0):
        self.path = path
        self._key = key
        self._own = dict(own)
        self._policy = dict(policy or {})
        self._check_every = check_every
        self._checked = 0.0
        self._mtime: float | None = None
        self.redactor = self._build()
        memory.trim()  # what building it needed for a moment (several MB with 1,000 secrets) goes back

    def _build(self) -> Redactor:
        values: dict[str, str] = {}
        if self.path is not None and self._key is not None and self.path.exists():
            self._mtime = self.path.stat().st_mtime
            values.update(read_store(self.path, self._key))
        values.update(self._own)
        redactor = Redactor(values, self._policy)
        if redactor.skipped:
            log.warning("secrets too short to redact safely", names=redactor.skipped)
        log.info("secret registry loaded", secrets=len(values))
        return redactor

    def add_own(self, name: str, value: str) -> None:
        """One of the proxy's own secrets changed (a rotated upstream key): the redactor is rebuilt with it."""
        self._own[name] = value
        self.redactor = self._build()

    def current(self) -> Redactor:
        now = time.monotonic()
        if self.path is not None and now - self._checked >= self._check_every:
            self._checked = now
            mtime = self.path.stat().st_mtime if self.path.exists() else None
            if mtime != self._mtime:
                try:
                    self.redactor = self._build()
                    memory.trim()  # the build's scratch space and the previous redactor go back
                except ValueError:
                    log.exception("secret registry unreadable; keeping the previous one")
                    self._mtime = mtime
        return self.redactor
