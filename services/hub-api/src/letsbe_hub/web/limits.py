"""Attempt limits of the routes anyone can call (website orders, customers' sign-in requests, operators' failed
sign-ins): per client address, counted in Postgres, so every hub replica shares one count.

The client address is the TCP peer unless the peer is a configured proxy (``trusted_proxies``: the hub's nginx);
then ``X-Forwarded-For`` is read from the right, skipping trusted hops, and the first untrusted address is the
client. Anything a client could prepend to that header is left of it and never read. IPv6 clients are counted per
/64 (one subscriber's whole network), IPv4 per address.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy import DateTime, Integer, String, delete, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column
from starlette.requests import Request

from letsbe_hub.db import Base
from letsbe_platform.errors import TooManyRequests

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class RateCounter(Base):
    """The attempts of one key in its current window. A window opens at the key's first attempt after the last one
    closed, so a client has ``limit`` attempts in the ``window_seconds`` from its first, wherever the clock stands."""

    __tablename__ = "rate_counters"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    count: Mapped[int] = mapped_column(Integer)


def client_address(request: Request) -> str:
    """The client's address as a limit key ("203.0.113.7", "2001:db8:1:2::/64")."""
    return address_of(
        request.client.host if request.client else None,
        request.headers.getlist("x-forwarded-for"),
        request.app.state.settings.trusted_proxies,
    )


def address_of(peer: str | None, forwarded_for: list[str], trusted_proxies: list[str]) -> str:
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


async def hit(session: AsyncSession, key: str, *, limit: int, window_seconds: int, now: datetime, what: str) -> None:
    """Count one attempt of ``key``; 429 (``Too many {what} from this address``) past ``limit`` in its window. A
    caller that counts refused attempts too commits this on its own, before anything else."""
    count, opened = await _count(session, key, window_seconds, now)
    if count > limit:
        retry = int((opened + timedelta(seconds=window_seconds) - now).total_seconds()) + 1
        raise TooManyRequests(f"Too many {what} from this address; try again in {retry} s.", retry_after_seconds=retry)


async def note(session: AsyncSession, key: str, *, window_seconds: int, now: datetime) -> int:
    """Count one attempt of ``key``; the count of its window with it."""
    return (await _count(session, key, window_seconds, now))[0]


async def _count(session: AsyncSession, key: str, window_seconds: int, now: datetime) -> tuple[int, datetime]:
    # One statement: concurrent attempts of one key (two replicas) queue on its row, none is lost.
    counted = await session.execute(
        text(
            "INSERT INTO hub.rate_counters AS c (key, window_start, count) VALUES (:k, :now, 1) "
            "ON CONFLICT (key) DO UPDATE SET "
            "window_start = CASE WHEN c.window_start <= :closed THEN :now ELSE c.window_start END, "
            "count = CASE WHEN c.window_start <= :closed THEN 1 ELSE c.count + 1 END "
            "RETURNING c.count, c.window_start"
        ),
        {"k": key[:200], "now": now, "closed": now - timedelta(seconds=window_seconds)},
    )
    count, opened = counted.one()
    return count, opened


async def hits(session: AsyncSession, key: str, *, window_seconds: int, now: datetime) -> int:
    """How many attempts of ``key`` its open window has counted (0 when it has none open)."""
    query = select(RateCounter.count, RateCounter.window_start).where(RateCounter.key == key[:200])
    row = (await session.execute(query)).first()
    if row is None or row.window_start <= now - timedelta(seconds=window_seconds):
        return 0
    return row.count


async def prune(session: AsyncSession, before: datetime) -> int:
    result = await session.execute(delete(RateCounter).where(RateCounter.window_start < before))
    return result.rowcount or 0
