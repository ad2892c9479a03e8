"""Is a record served yet? Ask the zone's authoritative nameservers directly (no recursive cache in between)."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import dns.asyncquery
import dns.asyncresolver
import dns.exception
import dns.message
import dns.rdatatype

from letsbe_dns.cloudflare import Zone
from letsbe_dns.config import DnsSettings
from letsbe_platform.logging import get_logger
from letsbe_platform.waiting import Backoff, poll_until

log = get_logger(__name__)

Heartbeat = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Expected:
    type: str
    name: str
    content: str
    priority: int | None = None

    def __str__(self) -> str:
        return f"{self.type} {self.name} {self.content}"


class NotVisible(Exception):
    """The records were written but the authoritative nameservers did not serve them within the bounded wait."""

    def __init__(self, missing: list[Expected], waited: float, reason: str | None = None):
        shown = ", ".join(map(str, missing[:10])) + (" …" if len(missing) > 10 else "")
        super().__init__(reason or f"not served by the zone's nameservers after {waited:.0f}s: {shown}")
        self.missing = missing


class Verifier:
    def __init__(self, settings: DnsSettings):
        self.settings = settings

    async def nameservers(self, zone: Zone) -> list[tuple[str, int]]:
        """(address, port) of each authoritative server: the configured override, else the zone's NS names."""
        port = self.settings.nameserver_port
        if self.settings.nameserver:
            return [(self.settings.nameserver, port)]
        addresses: list[tuple[str, int]] = []
        for ns in zone.name_servers:
            try:
                answer = await dns.asyncresolver.resolve(ns, "A", lifetime=self.settings.dns_query_timeout_seconds)
                addresses.extend((rd.address, port) for rd in answer)
            except dns.exception.DNSException as exc:
                log.warning("cannot resolve nameserver", nameserver=ns, error=repr(exc))
        if not addresses:
            names = ", ".join(zone.name_servers) or "none listed"
            raise NotVisible([], 0.0, reason=f"cannot resolve the zone's nameservers ({names})")
        return addresses

    async def missing(self, expected: Iterable[Expected], servers: list[tuple[str, int]]) -> list[Expected]:
        """The expected records that at least one server does not serve right now."""
        wanted = list(expected)
        keys = sorted({(e.name, e.type) for e in wanted})
        answers = await asyncio.gather(*(self._query(name, rtype, s) for name, rtype in keys for s in servers))
        served: dict[tuple[str, str], list[list[object]]] = {}
        i = 0
        for key in keys:
            served[key] = answers[i : i + len(servers)]
            i += len(servers)
        return [e for e in wanted if not all(_present(e, rdatas) for rdatas in served[(e.name, e.type)])]

    async def wait_visible(
        self,
        zone: Zone,
        expected: Iterable[Expected],
        *,
        timeout: float | None = None,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        wanted = list(expected)
        if not wanted:
            return
        timeout = timeout or self.settings.verify_timeout_seconds
        started = time.monotonic()
        servers = await self.nameservers(zone)
        left = wanted

        async def served() -> bool:
            nonlocal left
            left = await self.missing(wanted, servers)
            return not left

        # From a few milliseconds (the nameserver usually serves a record as soon as the API accepted it), backing
        # off to verify_interval_seconds for one that takes longer.
        backoff = Backoff(self.settings.verify_first_interval_seconds, self.settings.verify_interval_seconds)
        if not await poll_until(served, timeout=timeout, backoff=backoff, heartbeat=heartbeat):
            raise NotVisible(left, time.monotonic() - started)

    async def _query(self, name: str, rtype: str, server: tuple[str, int]) -> list[object]:
        query = dns.message.make_query(name, rtype)
        try:
            response, _ = await dns.asyncquery.udp_with_fallback(
                query, server[0], port=server[1], timeout=self.settings.dns_query_timeout_seconds
            )
        except (dns.exception.DNSException, OSError):
            return []  # not answering counts as not visible yet
        want = dns.rdatatype.from_text(rtype)
        return [rd for rrset in response.answer if rrset.rdtype == want for rd in rrset]


def _present(e: Expected, rdatas: list[object]) -> bool:
    return any(_matches(e, rd) for rd in rdatas)


def _matches(e: Expected, rd: object) -> bool:
    if e.type in {"A", "AAAA"}:
        return ipaddress.ip_address(rd.address) == ipaddress.ip_address(e.content)  # type: ignore[attr-defined]
    if e.type == "CNAME":
        return _host(rd.target) == _host(e.content)  # type: ignore[attr-defined]
    if e.type == "MX":
        return rd.preference == e.priority and _host(rd.exchange) == _host(e.content)  # type: ignore[attr-defined]
    if e.type == "TXT":
        return b"".join(rd.strings).decode(errors="replace") == e.content.strip('"')  # type: ignore[attr-defined]
    if e.type == "SRV":
        weight, port, target = e.content.split(" ", 2)
        return (rd.priority, rd.weight, rd.port, _host(rd.target)) == (  # type: ignore[attr-defined]
            e.priority,
            int(weight),
            int(port),
            _host(target),
        )
    return False


def _host(value: object) -> str:
    return str(value).lower().rstrip(".")
