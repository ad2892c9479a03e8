"""The tenant's secrets, encrypted at rest (Fernet), and ``SECRET_REF(name)`` substitution.

The agent never holds a secret: it writes ``SECRET_REF(name)`` and the wrapper puts the value in only at
execution, only if the secret is bound to the tool being called, and scrubs values out of whatever it returns.

File format: ``letsbe_agent.secret_store`` (shared with the Secrets Proxy's registry, so both read one file with
one key).

CLI (the value is read from stdin, never from argv, so it stays out of shell history and ``ps``)::

    python -m letsbe_safety_wrapper.tools.secrets set NAME --tools nextcloud,ghost < value
    python -m letsbe_safety_wrapper.tools.secrets list
    python -m letsbe_safety_wrapper.tools.secrets remove NAME
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from letsbe_agent import fernet, secret_store
from letsbe_safety_wrapper.tools.errors import SecretNotBound, UnknownSecret

SECRET_REF = re.compile(r"SECRET_REF\(([A-Za-z0-9_.-]{1,64})\)")
NAME = re.compile(secret_store.NAME_PATTERN)


@dataclass(frozen=True)
class Secret:
    name: str
    value: str
    tools: frozenset[str]


class SecretStore:
    """Loaded once at start and on change (the file is small: tens of secrets).

    Key rotation: with ``previous_key`` (given only while the provisioner rotates the secrets key), a store that
    ``key`` does not open but ``previous_key`` does is re-encrypted under ``key`` at once, by an atomic replace of the
    file: a crash leaves the whole old file (``previous_key`` opens it, the next load redoes this) or the whole new
    one. The Safety Wrapper is the store's only writer, so only it does this; the Secrets Proxy reads with ``key``.
    """

    def __init__(self, path: Path, key: str, previous_key: str | None = None):
        self.path = Path(path)
        fernet.check_key(key)
        if previous_key is not None:
            fernet.check_key(previous_key)
        self._key = key
        self._previous_key = previous_key
        self._secrets: dict[str, Secret] = {}
        self._mtime: float | None = None
        self.reload()

    @classmethod
    def from_settings(cls, settings: Any) -> SecretStore:
        previous = settings.secrets_previous_key
        return cls(
            settings.secrets_path,
            settings.secrets_key.get_secret_value(),
            previous.get_secret_value() if previous is not None else None,
        )

    # --- reading -------------------------------------------------------------------------------------------

    def reload(self) -> None:
        if not self.path.exists():
            self._secrets, self._mtime = {}, None
            return
        mtime = self.path.stat().st_mtime
        stored, rekey = secret_store.read(self.path, self._key, self._previous_key)
        self._secrets = {
            name: Secret(name=name, value=entry.value, tools=frozenset(entry.tools)) for name, entry in stored.items()
        }
        self._mtime = mtime
        if rekey:
            self._write()  # the same secrets, now under the current key

    def refresh(self) -> None:
        """Pick up a file changed by the CLI (a stat per call; a decrypt only when it changed)."""
        mtime = self.path.stat().st_mtime if self.path.exists() else None
        if mtime != self._mtime:
            self.reload()

    def names(self) -> list[str]:
        return sorted(self._secrets)

    def get(self, name: str) -> Secret | None:
        return self._secrets.get(name)

    def values(self) -> list[Secret]:
        return list(self._secrets.values())

    # --- writing (CLI and tests) ---------------------------------------------------------------------------

    def put(self, name: str, value: str, tools: Iterable[str]) -> None:
        if not NAME.match(name):
            raise ValueError("a secret name is 1-64 of A-Z a-z 0-9 _ . -")
        if not value:
            raise ValueError("a secret value cannot be empty")
        self._secrets[name] = Secret(name=name, value=value, tools=frozenset(tools))
        self._write()

    def remove(self, name: str) -> bool:
        found = self._secrets.pop(name, None) is not None
        if found:
            self._write()
        return found

    def _write(self) -> None:
        secret_store.write(
            self.path, self._key,
            {s.name: secret_store.StoredSecret(s.value, tuple(s.tools)) for s in self._secrets.values()},
        )
        self._mtime = self.path.stat().st_mtime

    # --- use -----------------------------------------------------------------------------------------------

    def check_refs(self, tool: str, *values: Any) -> set[str]:
        """Every secret named in ``values`` must exist and be bound to ``tool``. Returns the names."""
        names: set[str] = set()
        for value in values:
            for text in _strings(value):
                names.update(SECRET_REF.findall(text))
        for name in sorted(names):
            secret = self._secrets.get(name)
            if secret is None:
                raise UnknownSecret(f"No secret named '{name}' is stored on this tenant.", secret=name)
            if tool not in secret.tools:
                raise SecretNotBound(f"The secret '{name}' is not bound to the tool '{tool}'.", secret=name, tool=tool)
        return names

    def substitute(self, tool: str, value: Any) -> Any:
        """A copy of ``value`` with every ``SECRET_REF(name)`` replaced by the value (bound secrets only)."""
        self.check_refs(tool, value)

        def sub(text: str) -> str:
            return SECRET_REF.sub(lambda m: self._secrets[m.group(1)].value, text)

        return _map_strings(value, sub)

    def scrub(self, value: Any) -> Any:
        """A copy of ``value`` with every stored secret value turned back into ``SECRET_REF(name)``."""
        secrets = sorted(self._secrets.values(), key=lambda s: -len(s.value))  # longest first: no partial hits
        if not secrets:
            return value

        def sub(text: str) -> str:
            for s in secrets:
                if s.value in text:
                    text = text.replace(s.value, f"SECRET_REF({s.name})")
            return text

        return _map_strings(value, sub)


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def _map_strings(value: Any, fn: Any) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {fn(k) if isinstance(k, str) else k: _map_strings(v, fn) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_map_strings(v, fn) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    from letsbe_agent.settings import load_settings
    from letsbe_safety_wrapper.config import SafetyWrapperSettings

    parser = argparse.ArgumentParser(prog="python -m letsbe_safety_wrapper.tools.secrets")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_set = sub.add_parser("set", help="store a secret; the value is read from stdin")
    p_set.add_argument("name")
    p_set.add_argument("--tools", required=True, help="comma-separated tools the secret may be used with")
    sub.add_parser("list", help="names and bound tools (never values)")
    p_rm = sub.add_parser("remove")
    p_rm.add_argument("name")
    args = parser.parse_args(argv)

    settings = load_settings(SafetyWrapperSettings)  # in the agent's container: its environment, checked as at start
    if settings.secrets_key is None:
        print("LETSBE_SW_SECRETS_KEY is not set", file=sys.stderr)
        return 2
    store = SecretStore.from_settings(settings)
    if args.cmd == "set":
        value = sys.stdin.read().rstrip("\n")
        store.put(args.name, value, [t.strip() for t in args.tools.split(",") if t.strip()])
        print(f"stored {args.name}")
    elif args.cmd == "list":
        for name in store.names():
            secret = store.get(name)
            assert secret is not None
            print(f"{name}\t{','.join(sorted(secret.tools))}")
    elif args.cmd == "remove":
        if not store.remove(args.name):
            print(f"no secret named {args.name}", file=sys.stderr)
            return 1
        print(f"removed {args.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
