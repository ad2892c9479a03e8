"""The agent's credential: a 0600 JSON file in the state directory, replaced atomically, deleted on re-enrolment."""

from __future__ import annotations

import os
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path

from letsbe_agent.files import read_json, write_json


@dataclass(frozen=True)
class Credential:
    agent_id: uuid.UUID
    tenant_id: uuid.UUID
    api_key: str

    def __repr__(self) -> str:  # never print the key
        return f"Credential(agent_id={self.agent_id}, tenant_id={self.tenant_id})"


class CredentialStore:
    def __init__(self, path: Path):
        self.path = path

    def load(self) -> Credential | None:
        data = read_json(self.path)
        if data is None:
            return None
        mode = stat.S_IMODE(os.stat(self.path).st_mode)
        if mode & 0o077:  # someone loosened it: tighten again rather than run with a readable key
            os.chmod(self.path, 0o600)
        return Credential(uuid.UUID(data["agent_id"]), uuid.UUID(data["tenant_id"]), data["api_key"])

    def save(self, credential: Credential) -> None:
        write_json(
            self.path,
            {
                "agent_id": str(credential.agent_id),
                "tenant_id": str(credential.tenant_id),
                "api_key": credential.api_key,
            },
            mode=0o600,
        )

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)
