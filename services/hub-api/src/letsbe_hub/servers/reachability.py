"""Is a new server reachable over SSH, and which host key does it present?

The fingerprint is captured on first contact (trust on first use) right after we created the server, and pinned in
``ServerTarget.host_key_fingerprint``: every later SSH session (the provisioner) refuses any other key.
"""

from __future__ import annotations

import asyncio

from letsbe_hub.providers.base import Heartbeat
from letsbe_hub.providers.errors import ProviderTimeout
from letsbe_platform.logging import get_logger
from letsbe_platform.waiting import Backoff, poll_until

log = get_logger(__name__)


async def read_host_key(host: str, port: int, *, timeout: float = 10.0) -> str:
    """The server's SSH host key fingerprint (``SHA256:…``); raises OSError/asyncssh.Error/TimeoutError."""
    import asyncssh  # here, not at the top: a second of start-up for every hub process, and only this check needs it

    key = await asyncio.wait_for(asyncssh.get_server_host_key(host, port), timeout=timeout)
    if key is None:
        raise asyncssh.Error(asyncssh.DISC_KEY_EXCHANGE_FAILED, "the server presented no host key")
    return key.get_fingerprint("sha256")


async def wait_for_host_key(
    host: str,
    port: int,
    *,
    timeout: float,
    backoff: Backoff,
    provider: str = "ssh",
    heartbeat: Heartbeat | None = None,
) -> str:
    """Retry until sshd answers (a new VPS boots, then cloud-init runs); ProviderTimeout after ``timeout``."""
    import asyncssh  # see read_host_key

    found: list[str] = []
    last = "no answer"

    async def answers() -> bool:
        nonlocal last
        try:
            found.append(await read_host_key(host, port, timeout=min(10.0, max(backoff.cap, 1.0))))
            return True
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            last = f"{type(exc).__name__}: {exc}"[:300]
            return False

    if not await poll_until(answers, timeout=timeout, backoff=backoff, heartbeat=heartbeat):
        raise ProviderTimeout(provider, f"SSH on {host}:{port} not reachable after {timeout:g}s ({last})")
    return found[0]
