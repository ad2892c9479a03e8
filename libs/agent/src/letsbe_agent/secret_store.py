"""The tenant's secret store file: the Safety Wrapper writes it (its CLI, key rotation), the Secrets Proxy reads it
(the values it must keep from the model), the provisioner checks which key opens it while it rotates that key. One
file, one Fernet key (``ai.secrets_key``).

A Fernet token whose plaintext is ``{"version": 1, "secrets": {"<name>": {"value": "...", "tools": ["ghost"]}}}``.
What is read is validated (a store that is not this shape is refused with a ValueError that names the path and what
is wrong, never a value); what is written is written atomically (a crash leaves the whole old file or the whole new
one) and 0600.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from letsbe_agent import fernet

NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
Name = Annotated[str, Meta(pattern=NAME_PATTERN)]


class StoredSecret(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    value: Annotated[str, Meta(min_length=1)]
    tools: tuple[str, ...] = ()


class _Document(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    version: Literal[1]
    secrets: dict[Name, StoredSecret] = {}


def decode(plain: bytes, where: Path | str = "the secret store") -> dict[str, StoredSecret]:
    try:
        return msgspec.json.decode(plain, type=_Document).secrets
    except msgspec.ValidationError as exc:  # says where in the document, never the value
        raise ValueError(f"{where}: not a valid secret store: {exc}") from None
    except msgspec.DecodeError:
        raise ValueError(f"{where}: not a valid secret store: not JSON") from None


def encode(secrets: Mapping[str, StoredSecret]) -> bytes:
    doc = _Document(version=1, secrets={n: StoredSecret(s.value, tuple(sorted(s.tools))) for n, s in secrets.items()})
    return msgspec.json.encode(doc)


def read(path: Path, key: str, previous_key: str | None = None) -> tuple[dict[str, StoredSecret], bool]:
    """The secrets in ``path``, and whether only ``previous_key`` opened it (then it is to be written again under
    ``key``). A missing file raises FileNotFoundError; one neither key opens, or of another shape, ValueError."""
    token = path.read_bytes()
    try:
        return decode(fernet.decrypt(key, token), path), False
    except fernet.InvalidToken as exc:
        if previous_key is None:
            raise ValueError(f"{path}: cannot decrypt the secret store (wrong key or damaged file)") from exc
        try:
            plain = fernet.decrypt(previous_key, token)
        except fernet.InvalidToken:
            raise ValueError(f"{path}: cannot decrypt the secret store with the key or the previous key") from exc
    return decode(plain, path), True


def opens_with(token: bytes | str, key: str) -> bool:
    """Whether ``key`` opens the store's ciphertext ``token``: its MAC only, nothing is decrypted (the provisioner
    checks a tenant's store this way, over SSH, while it rotates the key)."""
    try:
        fernet.verify(key, token)
    except fernet.InvalidToken:
        return False
    return True


def write(path: Path, key: str, secrets: Mapping[str, StoredSecret]) -> None:
    token = fernet.encrypt(key, encode(secrets))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".secrets-")
    try:
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, token)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)  # the rename itself survives a power cut


def values(secrets: Mapping[str, str], tools: Iterable[str] = ()) -> dict[str, StoredSecret]:
    """Plain values as store entries (tests, the benchmark)."""
    return {name: StoredSecret(value, tuple(tools)) for name, value in secrets.items()}


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
