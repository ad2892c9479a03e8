"""Cloudflare behind a small protocol: zones by name, DNS records listed / created / edited / deleted.

Why the official ``cloudflare`` SDK (>=5, ``AsyncCloudflare``) rather than raw httpx: checked against 5.9, its async
client takes a ``base_url`` (so tests and the sandbox point it at the loopback fake), auto-paginates list
endpoints from ``result_info``, retries 429 / 5xx / connection errors with exponential backoff that honours
``Retry-After`` (up to 60 s; longer hints fall back to its own backoff), and keeps the parsed error envelope on the
exception, so Cloudflare's own messages reach ``order-failed`` verbatim. This module is the only place that
imports it; the rest of the service sees plain dataclasses and one error type.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import cloudflare
from prometheus_client import Histogram

from letsbe_dns.config import DnsSettings
from letsbe_platform.metrics import LATENCY_BUCKETS
from letsbe_platform.tls import client_context

T = TypeVar("T")

CLOUDFLARE_CALL_SECONDS = Histogram(
    "cloudflare_call_duration_seconds",
    "Cloudflare API calls (after the SDK's own retries), by operation and outcome",
    ["operation", "outcome"],
    buckets=LATENCY_BUCKETS,
)

# Codes Cloudflare answers a create with when the record is already there.
RECORD_EXISTS_CODES = frozenset({81053, 81057, 81058})
RECORD_MISSING_CODE = 81044
VALIDATION_CODE = 1004


@dataclass(frozen=True)
class Zone:
    id: str
    name: str
    name_servers: tuple[str, ...]


@dataclass(frozen=True)
class Record:
    id: str
    type: str
    name: str
    content: str
    priority: int | None = None
    comment: str | None = None


@dataclass(frozen=True)
class RecordSpec:
    """What to write. SRV content is ``"<weight> <port> <target>"`` with the priority apart, as Cloudflare lists it."""

    type: str
    name: str
    content: str
    priority: int | None = None
    ttl: int = 1

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "name": self.name, "ttl": self.ttl}
        if self.type == "SRV":
            weight, port, target = self.content.split(" ", 2)
            body["data"] = {"priority": self.priority, "weight": int(weight), "port": int(port), "target": target}
        else:
            body["content"] = self.content
            if self.priority is not None:
                body["priority"] = self.priority
        if self.type in {"A", "AAAA", "CNAME"}:
            body["proxied"] = False  # tools terminate TLS themselves (certbot on the VPS); no orange cloud
        return body


class CloudflareError(Exception):
    """A failed Cloudflare call. ``str(exc)`` is Cloudflare's own wording (``code: message``), nothing added."""

    def __init__(self, message: str, *, status: int | None = None, codes: tuple[int, ...] = (), retryable: bool):
        super().__init__(message)
        self.message = message
        self.status = status
        self.codes = codes
        self.retryable = retryable

    @property
    def record_exists(self) -> bool:
        return bool(RECORD_EXISTS_CODES.intersection(self.codes))

    @property
    def validation(self) -> bool:
        """The record itself was refused (bad content, a name the zone or its plan does not allow)."""
        return self.status == 400 and (VALIDATION_CODE in self.codes or any(9000 <= c < 10000 for c in self.codes))


class ZoneNotFound(CloudflareError):
    def __init__(self, message: str):
        super().__init__(message, retryable=False)


class DnsProvider(Protocol):
    async def find_zone(self, domain: str, zone_id: str | None = None) -> Zone: ...

    async def list_records(self, zone_id: str, *, type: str, name: str) -> list[Record]: ...

    async def create_record(self, zone_id: str, spec: RecordSpec, *, comment: str | None = None) -> Record: ...

    async def update_record(self, zone_id: str, record_id: str, spec: RecordSpec) -> Record: ...

    async def delete_record(self, zone_id: str, record_id: str) -> bool: ...

    async def aclose(self) -> None: ...


class CloudflareDns:
    """:class:`DnsProvider` over the official async SDK. Built in lifespan from settings; the token stays inside."""

    def __init__(self, settings: DnsSettings):
        token = settings.cloudflare_api_token
        self._client: cloudflare.AsyncCloudflare | None = None
        if token is not None and token.get_secret_value():
            self._client = cloudflare.AsyncCloudflare(
                api_token=token.get_secret_value(),
                base_url=settings.cloudflare_base_url,
                max_retries=settings.cloudflare_max_retries,
                timeout=settings.cloudflare_timeout_seconds,
                http_client=cloudflare.DefaultAsyncHttpxClient(verify=client_context()),  # the SDK's defaults
            )

    @property
    def client(self) -> cloudflare.AsyncCloudflare:
        if self._client is None:
            raise CloudflareError(
                "Cloudflare API token is not configured (LETSBE_DNS_CLOUDFLARE_API_TOKEN)", retryable=False
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def _call(self, operation: str, fn: Callable[[], Awaitable[T]]) -> T:
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await fn()
            outcome = "ok"
            return result
        except cloudflare.APIStatusError as exc:
            outcome = str(exc.status_code)
            raise _status_error(exc) from None
        except cloudflare.APIConnectionError as exc:  # includes timeouts, after the SDK's retries
            outcome = "unreachable"
            raise CloudflareError(f"Cloudflare API unreachable: {exc}", retryable=True) from None
        finally:
            CLOUDFLARE_CALL_SECONDS.labels(operation, outcome).observe(time.perf_counter() - started)

    async def find_zone(self, domain: str, zone_id: str | None = None) -> Zone:
        """The zone holding ``domain``: by id when the order names one, else the longest matching zone name."""
        domain = domain.lower().rstrip(".")
        if zone_id:
            z = await self._call("zones.get", lambda: self.client.zones.get(zone_id=zone_id))
            zone = _zone(z)
            if not _within(domain, zone.name):
                raise ZoneNotFound(f"Cloudflare zone {zone_id} is {zone.name}, which does not contain {domain}")
            return zone
        labels = domain.split(".")
        candidates = [".".join(labels[i:]) for i in range(len(labels) - 1)]
        for name in candidates:
            zones = await self._call("zones.list", lambda n=name: _collect(self.client.zones.list(name=n)))
            for z in zones:
                if getattr(z, "name", None) == name:
                    return _zone(z)
        raise ZoneNotFound(f"No Cloudflare zone found for {domain} (looked for {', '.join(candidates)})")

    async def list_records(self, zone_id: str, *, type: str, name: str) -> list[Record]:
        rows = await self._call(
            "records.list",
            lambda: _collect(
                self.client.dns.records.list(zone_id=zone_id, type=type, name={"exact": name}, per_page=100)  # type: ignore[arg-type]
            ),
        )
        return [_record(r) for r in rows]

    async def create_record(self, zone_id: str, spec: RecordSpec, *, comment: str | None = None) -> Record:
        body = spec.body()
        if comment:
            body["comment"] = comment
        r = await self._call("records.create", lambda: self.client.dns.records.create(zone_id=zone_id, **body))
        return _record(r)

    async def update_record(self, zone_id: str, record_id: str, spec: RecordSpec) -> Record:
        # PATCH: fields we do not send (the comment, tags) stay as they are.
        r = await self._call(
            "records.edit", lambda: self.client.dns.records.edit(record_id, zone_id=zone_id, **spec.body())
        )
        return _record(r)

    async def delete_record(self, zone_id: str, record_id: str) -> bool:
        """True when deleted now, False when it was already gone."""
        try:
            await self._call("records.delete", lambda: self.client.dns.records.delete(record_id, zone_id=zone_id))
        except CloudflareError as exc:
            if RECORD_MISSING_CODE in exc.codes or exc.status == 404:
                return False
            raise
        return True


async def _collect(paginator: Any) -> list[Any]:
    return [item async for item in paginator]


def _within(name: str, zone_name: str) -> bool:
    return name == zone_name or name.endswith("." + zone_name)


def _zone(z: Any) -> Zone:
    return Zone(id=z.id, name=str(z.name).lower(), name_servers=tuple(getattr(z, "name_servers", None) or ()))


def _record(r: Any) -> Record:
    priority = getattr(r, "priority", None)
    return Record(
        id=r.id,
        type=r.type,
        name=str(r.name).lower(),
        content=str(r.content or ""),
        priority=int(priority) if priority is not None else None,
        comment=getattr(r, "comment", None),
    )


def _status_error(exc: cloudflare.APIStatusError) -> CloudflareError:
    body = exc.body if isinstance(exc.body, dict) else {}
    parts: list[str] = []
    codes: list[int] = []
    for error in body.get("errors") or []:
        if not isinstance(error, dict):
            continue
        code = error.get("code")
        text = f"{code}: {error.get('message', '')}" if code is not None else str(error.get("message", ""))
        chain = [c for c in error.get("error_chain") or [] if isinstance(c, dict)]
        if chain:
            text += " (" + "; ".join(f"{c.get('code')}: {c.get('message', '')}" for c in chain) + ")"
        parts.append(text)
        codes.extend(c for c in [code, *(c.get("code") for c in chain)] if isinstance(c, int))
    status = exc.status_code
    message = "; ".join(parts) or f"HTTP {status} from Cloudflare"
    return CloudflareError(message, status=status, codes=tuple(codes), retryable=status == 429 or status >= 500)
