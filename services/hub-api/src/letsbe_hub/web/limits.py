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
    """Fixed-window attempt counters, one row per (key, window) for every replica."""

    __tablename__ = "rate_counters"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
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


def _window(now: datetime, seconds: int) -> datetime:
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=now.tzinfo)


async def hit(session: AsyncSession, key: str, *, limit: int, window_seconds: int, now: datetime, what: str) -> None:
    """Count one attempt of ``key``; 429 (``Too many {what} from this address``) past ``limit`` in the window. A
    caller that counts refused attempts too commits this on its own, before anything else."""
    count = await note(session, key, window_seconds=window_seconds, now=now)
    if count > limit:
        end = _window(now, window_seconds) + timedelta(seconds=window_seconds)
        retry = int((end - now).total_seconds()) + 1
        raise TooManyRequests(f"Too many {what} from this address; try again in {retry} s.", retry_after_seconds=retry)


async def note(session: AsyncSession, key: str, *, window_seconds: int, now: datetime) -> int:
    """Count one attempt of ``key`` in the current fixed window; the window's count with it."""
    counted = await session.execute(
        text(
            "INSERT INTO hub.rate_counters AS c (key, window_start, count) VALUES (:k, :w, 1) "
            "ON CONFLICT (key, window_start) DO UPDATE SET count = c.count + 1 RETURNING c.count"
        ),
        {"k": key[:200], "w": _window(now, window_seconds)},
    )
    return counted.scalar_one()


async def hits(session: AsyncSession, key: str, *, window_seconds: int, now: datetime) -> int:
    """How many attempts of ``key`` the current window has counted."""
    window = _window(now, window_seconds)
    counted = await session.scalar(
        select(RateCounter.count).where(RateCounter.key == key[:200], RateCounter.window_start == window)
    )
    return counted or 0


async def prune(session: AsyncSession, before: datetime) -> int:
    result = await session.execute(delete(RateCounter).where(RateCounter.window_start < before))
    return result.rowcount or 0
