"""``python -m letsbe_sandbox``: run the stand-in world until SIGTERM, with its settings in ``<root>/env.json``.

`make run` starts this first when no provider credentials are configured, then starts every service with the
environment it wrote. ``LETSBE_SANDBOX_SLOW_SECONDS`` makes each slow step of the world take that long
(letsbe_sandbox.world.Sandbox); a file in ``<root>/holds/`` holds one until it is deleted (letsbe_sandbox.world.HOLDS).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from letsbe_sandbox.world import Ports


def ports_from_env() -> Ports:
    from letsbe_sandbox.world import Ports

    defaults = Ports()
    return Ports(
        hub=int(os.environ.get("LETSBE_HUB_PORT", defaults.hub)),
        provisioner=int(os.environ.get("LETSBE_PROVISIONER_PORT", defaults.provisioner)),
        dns=int(os.environ.get("LETSBE_DNS_PORT", defaults.dns)),
        monitor=int(os.environ.get("LETSBE_MONITOR_PORT", defaults.monitor)),
    )


def slow_from_env() -> float:
    raw = os.environ.get("LETSBE_SANDBOX_SLOW_SECONDS", "0")
    try:
        slow = float(raw)
    except ValueError:
        slow = -1.0
    if not 0 <= slow <= 600:
        sys.exit(f"LETSBE_SANDBOX_SLOW_SECONDS={raw!r}: expected seconds between 0 and 600")
    return slow


def main() -> None:
    root = Path(os.environ.get("LETSBE_SANDBOX_DIR", ".data/sandbox"))
    slow = slow_from_env()  # first: a refused setting stops it before the world's imports
    from letsbe_sandbox.world import Sandbox

    sandbox = Sandbox(root, ports_from_env(), slow=slow).start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        token_file = root / "admin-token"
        token_file.write_text(sandbox.material.admin_token + "\n")
        token_file.chmod(0o600)
        env_file = root / "env.json"
        tmp = env_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(sandbox.describe(), indent=2))
        tmp.chmod(0o600)
        tmp.replace(env_file)  # readers never see half a file
        for name, url in sandbox.describe()["fakes"].items():  # type: ignore[union-attr]
            print(f"fake {name:<10} {url}", flush=True)
        print("sandbox ready", flush=True)
        stop.wait()
    finally:
        sandbox.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
