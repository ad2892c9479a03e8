"""Abuse limits of the public order route: who the client is, how often it may try, which email domains are refused.

The client address is the TCP peer unless the peer is a configured proxy (``trusted_proxies``); then
``X-Forwarded-For`` is read from the right, skipping trusted hops, and the first untrusted address is the client.
Anything a client could prepend to that header is left of it and never read. IPv6 clients are counted per /64
(one subscriber's whole network), IPv4 per address.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy import delete, text
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_hub.billing.models import RateCounter
from letsbe_platform.errors import DomainError, TooManyRequests

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class DisposableEmail(DomainError):
    status_code, type, title = 422, "disposable-email", "Disposable email address"


@lru_cache(maxsize=8)
def _networks(proxies: tuple[str, ...]) -> tuple[IpNetwork, ...]:
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def _parse(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # [v6]:port
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def client_address(peer: str | None, forwarded_for: list[str], trusted_proxies: list[str]) -> str:
    """The client's address as a rate-limit key ("203.0.113.7", "2001:db8:1:2::/64")."""
    trusted = _networks(tuple(trusted_proxies))
    address = _parse(peer or "")
    hops = [h for header in forwarded_for for h in header.split(",")]
    while address is not None and any(address in net for net in trusted) and hops:
        address = _parse(hops.pop())  # the hop the trusted proxy saw; a garbled one ends the walk
    if address is None:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


async def hit(session: AsyncSession, key: str, *, limit: int, window_seconds: int, now: datetime) -> None:
    """Count one attempt of ``key`` in the current fixed window (shared by every replica); 429 past ``limit``.

    Callers commit this in its own transaction before validating anything else, so refused attempts count too.
    """
    epoch = int(now.timestamp())
    start = datetime.fromtimestamp(epoch - epoch % window_seconds, tz=now.tzinfo)
    count = (
        await session.execute(
            text(
                "INSERT INTO hub.rate_counters AS c (key, window_start, count) VALUES (:k, :w, 1) "
                "ON CONFLICT (key, window_start) DO UPDATE SET count = c.count + 1 RETURNING c.count"
            ),
            {"k": key[:200], "w": start},
        )
    ).scalar_one()
    if count > limit:
        retry = int((start + timedelta(seconds=window_seconds) - now).total_seconds()) + 1
        raise TooManyRequests(f"Too many orders from this address; try again in {retry} s.", retry_after_seconds=retry)


async def prune(session: AsyncSession, before: datetime) -> int:
    result = await session.execute(delete(RateCounter).where(RateCounter.window_start < before))
    return result.rowcount or 0


def refuse_disposable(email: str, extra: list[str]) -> None:
    """422 when the email's domain, or a domain it is under, is a disposable-mail provider."""
    from disposable_email_domains import blocklist  # a set of 100k+ names: built at the first order, not at start-up

    domain = email.rpartition("@")[2].lower().rstrip(".")
    labels = domain.split(".")
    own = {d.lower() for d in extra}
    for i in range(len(labels) - 1):
        candidate = ".".join(labels[i:])
        if candidate in blocklist or candidate in own:
            raise DisposableEmail(
                f"Addresses at {domain} are disposable; use an address you will still read next month "
                "(invoices and your server's sign-in links go there).",
                email_domain=domain,
            )
