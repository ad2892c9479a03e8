"""A loopback fake of the Cloudflare v4 API (zones, DNS records) plus an authoritative DNS server.

HTTP: ``GET /client/v4/zones?name=``, ``GET /client/v4/zones/{id}``,
``GET|POST /client/v4/zones/{id}/dns_records`` (filters ``type``, ``name``/``name.exact``,
``content``/``content.exact``; ``page``/``per_page`` with ``result_info``) and
``GET|PATCH|PUT|DELETE /client/v4/zones/{id}/dns_records/{record_id}``. Every answer is Cloudflare's
envelope ``{success, errors: [{code, message}], messages, result[, result_info]}`` with the codes
Cloudflare uses: 9106 (no credentials), 10000 (authentication error), 7003 (malformed identifier),
9109 (zone not accessible), 81044 (record does not exist), 81053/81057/81058 (record exists),
1004 (DNS validation error, reason in ``error_chain``), 971 (HTTP 429 with ``Retry-After``).

DNS: :meth:`FakeCloudflare.dns_server` serves the fake's *current* records over UDP and TCP on one
loopback port, authoritatively (AA), with wildcard synthesis, CNAME answers, NXDOMAIN + SOA for
missing names and REFUSED outside its zones: a "visible on the authoritative nameservers yet?" check
really queries DNS.

Test switches: :meth:`refuse_wildcards` (a zone whose plan refuses ``*.`` records), :meth:`fail_next`
(any error envelope for the next matching requests), :meth:`rate_limit_next` (429 + ``Retry-After``)
and :meth:`dns_delay` (changes reach DNS only after a delay, like propagation to the edge), or
:meth:`hold_dns` (changes reach DNS only when the test releases them).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import secrets
import socket
import socketserver
import struct
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from letsbe_fakes.state import StateFile, saving_after_each_request

API_PREFIX = "/client/v4"
RECORD_TYPES = {"A", "AAAA", "CNAME", "MX", "TXT", "SRV", "NS", "CAA"}
DEFAULT_NAME_SERVERS = ("ns1.fake-cloudflare.invalid", "ns2.fake-cloudflare.invalid")


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _hex_id() -> str:
    return secrets.token_hex(16)


def _is_hex_id(value: str) -> bool:
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)


class CloudflareApiError(Exception):
    """Raised inside the fake's handlers; rendered as Cloudflare's error envelope."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        chain: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.chain = chain
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.chain:
            error["error_chain"] = self.chain
        body = {"success": False, "errors": [error], "messages": [], "result": None}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def validation_error(code: int, message: str) -> CloudflareApiError:
    """Cloudflare reports record validation failures as 1004 with the specific reason in ``error_chain``."""
    return CloudflareApiError(400, 1004, "DNS Validation Error", chain=[{"code": code, "message": message}])


@dataclass
class _Failure:
    method: str | None
    path_contains: str
    error: CloudflareApiError
    times: int


@dataclass
class Zone:
    id: str
    name: str
    name_servers: tuple[str, ...] = DEFAULT_NAME_SERVERS
    refuse_wildcards: bool = False
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # record id -> record

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": "active",
            "paused": False,
            "type": "full",
            "development_mode": 0,
            "name_servers": list(self.name_servers),
            "original_name_servers": [],
            "account": {"id": "0" * 32, "name": "LetsBe"},
            "plan": {"id": "0feeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "name": "Free Website", "legacy_id": "free"},
            "created_on": "2026-01-01T00:00:00Z",
            "modified_on": "2026-01-01T00:00:00Z",
        }


class FakeCloudflare:
    """State of the fake (zones, records, requests seen); ``.app`` is the ASGI app to serve on loopback.

    ``LoopbackServer(fake.app)`` then point a client at ``srv.url + "/client/v4"``.
    """

    def __init__(
        self,
        token: str = "test-cloudflare-token",  # noqa: S107 - the fake's own test credential
        *,
        default_per_page: int = 100,
        auto_zones: bool = False,
        state_dir: Path | None = None,
    ):
        """``state_dir``: zones and records survive a restart (letsbe_fakes.state); None: in memory only."""
        self.token = token
        # The sandbox of `make run`: any domain a user orders "is already on Cloudflare" (a zone appears on lookup).
        self.auto_zones = auto_zones
        self.default_per_page = default_per_page
        self.zones: dict[str, Zone] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path with query), in arrival order
        self._failures: list[_Failure] = []
        self._dns_delay = 0.0
        self._dns_held = False
        self._visible_at: dict[str, float] = {}  # record id -> monotonic time it becomes visible on DNS
        self._lock = threading.RLock()
        self.app = self._build_app()
        self._state = StateFile(state_dir / "cloudflare.json") if state_dir else None
        if self._state is not None:
            for z in (self._state.load() or {}).get("zones", []):
                zone = Zone(**{**z, "name_servers": tuple(z["name_servers"])})
                self.zones[zone.id] = zone
            self.app = saving_after_each_request(self.app, self.save_state)

    def save_state(self) -> None:
        assert self._state is not None
        with self._lock:
            self._state.save({"zones": [dataclasses.asdict(z) for z in self.zones.values()]})

    # --- test-facing API -----------------------------------------------------------------------------------

    def add_zone(
        self, name: str, *, zone_id: str | None = None, name_servers: tuple[str, ...] = DEFAULT_NAME_SERVERS
    ) -> Zone:
        with self._lock:
            zone = Zone(id=zone_id or _hex_id(), name=name.lower().rstrip("."), name_servers=name_servers)
            self.zones[zone.id] = zone
            return zone

    def zone(self, name_or_id: str) -> Zone:
        with self._lock:
            if name_or_id in self.zones:
                return self.zones[name_or_id]
            for zone in self.zones.values():
                if zone.name == name_or_id.lower().rstrip("."):
                    return zone
        raise KeyError(name_or_id)

    def refuse_wildcards(self, zone: str, refuse: bool = True) -> None:
        """Make the zone answer ``*.`` record creation with a validation error, as a restricted plan would."""
        self.zone(zone).refuse_wildcards = refuse

    def add_record(self, zone: str, type: str, name: str, content: str, **extra: Any) -> dict[str, Any]:
        """Seed a record as if someone had created it (e.g. the customer's own records before we arrive)."""
        z = self.zone(zone)
        with self._lock:
            return self._create(z, {"type": type, "name": name, "content": content, **extra})

    def records(self, zone: str, *, type: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        z = self.zone(zone)
        with self._lock:
            out = [dict(r) for r in z.records.values()]
        if type:
            out = [r for r in out if r["type"] == type]
        if name:
            out = [r for r in out if r["name"] == _fqdn(name, z.name)]
        return sorted(out, key=lambda r: (r["name"], r["type"], r["content"]))

    def fail_next(
        self,
        method: str | None,
        path_contains: str,
        *,
        status: int = 400,
        code: int = 1004,
        message: str = "DNS Validation Error",
        times: int = 1,
        headers: dict[str, str] | None = None,
        chain: list[dict[str, Any]] | None = None,
    ) -> None:
        """The next ``times`` requests matching (method, path substring) get this error envelope instead."""
        err = CloudflareApiError(status, code, message, chain=chain, headers=headers)
        with self._lock:
            self._failures.append(_Failure(method.upper() if method else None, path_contains, err, times))

    def rate_limit_next(self, times: int = 1, *, retry_after: int = 1, method: str | None = None) -> None:
        self.fail_next(
            method,
            "",
            status=429,
            code=971,
            message="Please wait and consider throttling your request speed",
            times=times,
            headers={"Retry-After": str(retry_after)},
        )

    def dns_delay(self, seconds: float) -> None:
        """Records created or changed from now on are served by DNS only ``seconds`` later."""
        self._dns_delay = seconds

    def hold_dns(self, held: bool = True) -> None:
        """While held, records created or changed are not served by DNS; releasing serves them from now on."""
        with self._lock:
            self._dns_held = held
            if not held:
                now = time.monotonic()
                self._visible_at.update({k: now for k, v in self._visible_at.items() if v == math.inf})

    def _visible_from(self) -> float:
        return math.inf if self._dns_held else time.monotonic() + self._dns_delay

    def count(self, method: str, path_contains: str = "") -> int:
        with self._lock:
            return sum(1 for m, p in self.requests if m == method and path_contains in p)

    def dns_server(self, host: str = "127.0.0.1", port: int = 0) -> FakeAuthoritativeDns:
        return FakeAuthoritativeDns(self, host=host, port=port)

    # --- record logic (shared by HTTP and DNS) -------------------------------------------------------------

    def _create(self, zone: Zone, body: dict[str, Any]) -> dict[str, Any]:
        record = self._validated(zone, body, record_id=None)
        for other in zone.records.values():
            if other["name"] != record["name"]:
                continue
            if _same(other, record):
                raise CloudflareApiError(400, 81058, "An identical record already exists.")
            address_like = {"A", "AAAA", "CNAME"}
            if (record["type"] == "CNAME" and other["type"] in address_like) or (
                other["type"] == "CNAME" and record["type"] in address_like
            ):
                message = "An A, AAAA, or CNAME record with that host already exists."
                raise CloudflareApiError(400, 81053, message)
            if record["type"] == "CNAME" and other["type"] == "CNAME":
                raise CloudflareApiError(400, 81057, "Record already exists.")
        zone.records[record["id"]] = record
        self._visible_at[record["id"]] = self._visible_from()
        return dict(record)

    def _update(self, zone: Zone, record_id: str, body: dict[str, Any], *, partial: bool) -> dict[str, Any]:
        current = zone.records.get(record_id)
        if current is None:
            raise CloudflareApiError(404, 81044, "Record does not exist.")
        merged = {**_editable(current), **body} if partial else body
        record = self._validated(zone, merged, record_id=record_id, created_on=current["created_on"])
        for other in zone.records.values():
            if other["id"] != record_id and other["name"] == record["name"] and _same(other, record):
                raise CloudflareApiError(400, 81058, "An identical record already exists.")
        zone.records[record_id] = record
        self._visible_at[record_id] = self._visible_from()
        return dict(record)

    def _validated(
        self, zone: Zone, body: dict[str, Any], *, record_id: str | None, created_on: str | None = None
    ) -> dict[str, Any]:
        rtype = str(body.get("type") or "").upper()
        if rtype not in RECORD_TYPES:
            raise validation_error(9004, f"Unsupported record type '{rtype}'.")
        raw_name = str(body.get("name") or "").strip()
        if not raw_name:
            raise validation_error(9000, "DNS name is invalid.")
        name = _fqdn(raw_name, zone.name)
        if name != zone.name and not name.endswith("." + zone.name):
            raise validation_error(9000, f"DNS name is invalid: {raw_name} is not in zone {zone.name}.")
        if name.startswith("*.") and zone.refuse_wildcards:
            raise validation_error(9021, "Wildcard DNS records are not allowed on this zone's plan.")
        priority = body.get("priority")
        data = body.get("data")
        content = body.get("content")
        if rtype == "SRV" and isinstance(data, dict):
            priority = data.get("priority", priority)
            target = str(data.get("target", "")).rstrip(".")
            content = f"{data.get('weight', 0)} {data.get('port', 0)} {target}"
        content = str(content or "").strip()
        if not content:
            raise validation_error(9001, "DNS record content is required.")
        if rtype == "A":
            try:
                ipaddress.IPv4Address(content)
            except ValueError:
                raise validation_error(9005, "Content for A record must be a valid IPv4 address.") from None
        elif rtype == "AAAA":
            try:
                content = str(ipaddress.IPv6Address(content))
            except ValueError:
                message = "Content for AAAA record must be a valid IPv6 address."
                raise validation_error(9006, message) from None
        elif rtype in {"CNAME", "MX", "NS"}:
            content = content.lower().rstrip(".")
        if rtype in {"MX", "SRV"}:
            if priority is None:
                raise validation_error(9008, f"{rtype} records require a priority.")
            priority = int(priority)
        ttl = int(body.get("ttl") or 1)
        if ttl != 1 and not 30 <= ttl <= 86400:
            raise validation_error(9030, "TTL must be between 60 and 86400 seconds, or 1 for Automatic.")
        now = _now()
        record: dict[str, Any] = {
            "id": record_id or _hex_id(),
            "zone_id": zone.id,
            "zone_name": zone.name,
            "name": name,
            "type": rtype,
            "content": content,
            "proxiable": rtype in {"A", "AAAA", "CNAME"},
            "proxied": bool(body.get("proxied", False)),
            "ttl": ttl,
            "locked": False,
            "comment": body.get("comment"),
            "tags": list(body.get("tags") or []),
            "settings": {},
            "meta": {"auto_added": False, "managed_by_apps": False, "managed_by_argo_tunnel": False},
            "created_on": created_on or now,
            "modified_on": now,
        }
        if priority is not None:
            record["priority"] = priority
        if rtype == "SRV":
            weight, port, target = content.split(" ", 2)
            record["data"] = {
                "priority": priority,
                "weight": int(weight),
                "port": int(port),
                "target": target,
            }
        return record

    def _visible_records(self, zone: Zone) -> list[dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            return [dict(r) for r in zone.records.values() if self._visible_at.get(r["id"], 0) <= now]

    def _zone_for(self, fqdn: str) -> Zone | None:
        with self._lock:
            candidates = [z for z in self.zones.values() if fqdn == z.name or fqdn.endswith("." + z.name)]
        return max(candidates, key=lambda z: len(z.name), default=None)

    # --- HTTP ----------------------------------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="Fake Cloudflare v4 API", openapi_url=None, docs_url=None, redoc_url=None)
        fake = self

        @app.middleware("http")
        async def envelope_errors(request: Request, call_next: Any) -> Any:
            path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            with fake._lock:
                fake.requests.append((request.method, path))
                injected = fake._take_failure(request.method, path)
            if injected is not None:
                return injected.response()
            auth = request.headers.get("authorization")
            if not auth:
                return CloudflareApiError(
                    400, 9106, "Missing X-Auth-Key, X-Auth-Email or Authorization headers"
                ).response()
            if auth != f"Bearer {fake.token}":
                return CloudflareApiError(403, 10000, "Authentication error").response()
            return await call_next(request)

        @app.exception_handler(CloudflareApiError)
        async def cloudflare_error(request: Request, exc: CloudflareApiError) -> JSONResponse:
            return exc.response()

        @app.exception_handler(StarletteHTTPException)
        async def no_route(request: Request, exc: StarletteHTTPException) -> JSONResponse:
            if exc.status_code == 405:
                return CloudflareApiError(405, 7001, "Method not allowed").response()
            return CloudflareApiError(exc.status_code, 7000, "No route for that URI").response()

        def ok(result: Any, result_info: dict[str, Any] | None = None, status: int = 200) -> JSONResponse:
            body: dict[str, Any] = {"success": True, "errors": [], "messages": [], "result": result}
            if result_info is not None:
                body["result_info"] = result_info
            return JSONResponse(body, status_code=status)

        def paginate(items: list[dict[str, Any]], request: Request) -> JSONResponse:
            try:
                page = max(1, int(request.query_params.get("page", 1)))
                per_page = max(1, min(5000, int(request.query_params.get("per_page", fake.default_per_page))))
            except ValueError:
                raise CloudflareApiError(400, 1004, "Invalid pagination parameters") from None
            total = len(items)
            chunk = items[(page - 1) * per_page : page * per_page]
            info = {
                "page": page,
                "per_page": per_page,
                "count": len(chunk),
                "total_count": total,
                "total_pages": max(1, -(-total // per_page)),
            }
            return ok(chunk, info)

        def zone_or_error(zone_id: str, path: str) -> Zone:
            if not _is_hex_id(zone_id):
                raise CloudflareApiError(
                    400, 7003, f"Could not route to {path}, perhaps your object identifier is invalid?"
                )
            with fake._lock:
                zone = fake.zones.get(zone_id)
            if zone is None:
                raise CloudflareApiError(403, 9109, "Unauthorized to access requested resource")
            return zone

        async def json_body(request: Request) -> dict[str, Any]:
            try:
                body = await request.json()
            except ValueError:
                raise CloudflareApiError(400, 6007, "Malformed JSON in request body") from None
            if not isinstance(body, dict):
                raise CloudflareApiError(400, 6007, "Malformed JSON in request body")
            return body

        @app.get(API_PREFIX + "/zones")
        async def list_zones(request: Request) -> JSONResponse:
            name = request.query_params.get("name")
            with fake._lock:
                zones = [z.as_json() for z in fake.zones.values()]
            if name:
                zones = [z for z in zones if z["name"] == name.lower().rstrip(".")]
                if not zones and fake.auto_zones:
                    zones = [fake.add_zone(name).as_json()]
            return paginate(sorted(zones, key=lambda z: z["name"]), request)

        @app.get(API_PREFIX + "/zones/{zone_id}")
        async def get_zone(zone_id: str, request: Request) -> JSONResponse:
            return ok(zone_or_error(zone_id, request.url.path).as_json())

        @app.get(API_PREFIX + "/zones/{zone_id}/dns_records")
        async def list_records(zone_id: str, request: Request) -> JSONResponse:
            zone = zone_or_error(zone_id, request.url.path)
            q = request.query_params
            rtype = q.get("type")
            name = q.get("name.exact") or q.get("name")
            content = q.get("content.exact") or q.get("content")
            with fake._lock:
                items = [dict(r) for r in zone.records.values()]
            if rtype:
                items = [r for r in items if r["type"] == rtype.upper()]
            if name:
                items = [r for r in items if r["name"] == _fqdn(name, zone.name)]
            if content:
                items = [r for r in items if r["content"].lower() == content.lower()]
            items.sort(key=lambda r: (r["type"], r["name"], r["content"]))
            return paginate(items, request)

        @app.post(API_PREFIX + "/zones/{zone_id}/dns_records")
        async def create_record(zone_id: str, request: Request) -> JSONResponse:
            zone = zone_or_error(zone_id, request.url.path)
            body = await json_body(request)
            with fake._lock:
                return ok(fake._create(zone, body))

        @app.get(API_PREFIX + "/zones/{zone_id}/dns_records/{record_id}")
        async def get_record(zone_id: str, record_id: str, request: Request) -> JSONResponse:
            zone = zone_or_error(zone_id, request.url.path)
            with fake._lock:
                record = zone.records.get(record_id)
            if record is None:
                raise CloudflareApiError(404, 81044, "Record does not exist.")
            return ok(dict(record))

        @app.patch(API_PREFIX + "/zones/{zone_id}/dns_records/{record_id}")
        async def patch_record(zone_id: str, record_id: str, request: Request) -> JSONResponse:
            zone = zone_or_error(zone_id, request.url.path)
            body = await json_body(request)
            with fake._lock:
                return ok(fake._update(zone, record_id, body, partial=True))

        @app.put(API_PREFIX + "/zones/{zone_id}/dns_records/{record_id}")
        async def put_record(zone_id: str, record_id: str, request: Request) -> JSONResponse:
            zone = zone_or_error(zone_id, request.url.path)
            body = await json_body(request)
            with fake._lock:
                return ok(fake._update(zone, record_id, body, partial=False))

        @app.delete(API_PREFIX + "/zones/{zone_id}/dns_records/{record_id}")
        async def delete_record(zone_id: str, record_id: str, request: Request) -> JSONResponse:
            zone = zone_or_error(zone_id, request.url.path)
            with fake._lock:
                if zone.records.pop(record_id, None) is None:
                    raise CloudflareApiError(404, 81044, "Record does not exist.")
                fake._visible_at.pop(record_id, None)
            return ok({"id": record_id})

        return app

    def _take_failure(self, method: str, path: str) -> CloudflareApiError | None:
        for failure in self._failures:
            if (failure.method in (None, method)) and failure.path_contains in path:
                failure.times -= 1
                if failure.times <= 0:
                    self._failures.remove(failure)
                return failure.error
        return None


def _fqdn(name: str, zone_name: str) -> str:
    name = name.strip().lower().rstrip(".")
    if name in ("@", ""):
        return zone_name
    if name == zone_name or name.endswith("." + zone_name):
        return name
    return f"{name}.{zone_name}"


def _editable(record: dict[str, Any]) -> dict[str, Any]:
    keys = ("type", "name", "content", "ttl", "proxied", "comment", "tags", "priority")
    out = {k: record[k] for k in keys if k in record}
    if record["type"] == "SRV":
        out["data"] = dict(record["data"])
    return out


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (a["type"], a["name"], a["content"], a.get("priority")) == (
        b["type"],
        b["name"],
        b["content"],
        b.get("priority"),
    )


# --- authoritative DNS -------------------------------------------------------------------------------------


def _rdata(record: dict[str, Any]) -> dns.rdata.Rdata:
    rtype = dns.rdatatype.from_text(record["type"])
    content = record["content"]
    if record["type"] == "TXT":
        raw = content.encode()
        chunks = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
        return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, rtype, chunks)
    if record["type"] in {"CNAME", "NS"}:
        text = content + "."
    elif record["type"] == "MX":
        text = f"{record['priority']} {content}."
    elif record["type"] == "SRV":
        text = f"{record['priority']} {content}."
    else:
        text = content
    return dns.rdata.from_text(dns.rdataclass.IN, rtype, text)


class FakeAuthoritativeDns:
    """UDP + TCP DNS on one loopback port, answering from :class:`FakeCloudflare`'s records."""

    def __init__(self, fake: FakeCloudflare, *, host: str = "127.0.0.1", port: int = 0):
        self.fake = fake
        self.host = host
        self._requested_port = port
        self.port = 0
        self.queries: list[tuple[str, str]] = []  # (name, type) in arrival order
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []

    # The resolver side of a test sets nameserver=host, port=port.
    def start(self) -> FakeAuthoritativeDns:
        answer = self.answer

        class Udp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                reply = answer(data)
                if reply:
                    sock.sendto(reply, self.client_address)

        class Tcp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock: socket.socket = self.request
                while True:
                    head = _recv_exact(sock, 2)
                    if head is None:
                        return
                    data = _recv_exact(sock, struct.unpack("!H", head)[0])
                    if data is None:
                        return
                    reply = answer(data)
                    if not reply:
                        return
                    sock.sendall(struct.pack("!H", len(reply)) + reply)

        class UdpServer(socketserver.ThreadingUDPServer):
            daemon_threads = True

        class TcpServer(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        for _ in range(20):  # UDP and TCP share the port number: retry if another socket took the TCP side
            udp = UdpServer((self.host, self._requested_port), Udp)
            port = udp.server_address[1]
            try:
                tcp = TcpServer((self.host, port), Tcp)
            except OSError:
                udp.server_close()
                if self._requested_port:
                    raise
                continue
            break
        else:
            raise RuntimeError("could not bind UDP and TCP on the same port")
        self.port = port
        self._servers = [udp, tcp]
        for server in self._servers:  # a short poll: stop()'s shutdown() waits for serve_forever's next look
            t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self) -> FakeAuthoritativeDns:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def answer(self, wire: bytes) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return None
        response = dns.message.make_response(query)
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        question = query.question[0]
        qname = question.name.to_text(omit_final_dot=True).lower()
        qtype = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((qname, qtype))
        zone = self.fake._zone_for(qname)
        if zone is None:
            response.set_rcode(dns.rcode.REFUSED)
            return response.to_wire()
        response.flags |= dns.flags.AA
        records = self.fake._visible_records(zone)
        by_name: dict[str, list[dict[str, Any]]] = {}
        for r in records:
            by_name.setdefault(r["name"], []).append(r)
        at_name = by_name.get(qname)
        if at_name is None:
            if _is_empty_non_terminal(qname, by_name, zone.name):
                at_name = []  # the name exists (something below it does): NODATA, not NXDOMAIN
            else:
                at_name = _wildcard_match(qname, by_name, zone.name)
        if at_name is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(self._soa(zone))
            return response.to_wire()
        matching = [r for r in at_name if r["type"] == qtype]
        if not matching and qtype != "CNAME":
            matching = [r for r in at_name if r["type"] == "CNAME"]
        if not matching:
            response.authority.append(self._soa(zone))  # NODATA
            return response.to_wire()
        for rtype in sorted({r["type"] for r in matching}):
            group = [r for r in matching if r["type"] == rtype]
            ttl = group[0]["ttl"] if group[0]["ttl"] != 1 else 300
            response.answer.append(
                dns.rrset.from_rdata_list(dns.name.from_text(qname), ttl, [_rdata(r) for r in group])
            )
        return response.to_wire()

    @staticmethod
    def _soa(zone: Zone) -> dns.rrset.RRset:
        text = f"{zone.name_servers[0]}. dns.cloudflare.com. 2300000000 10000 2400 604800 1800"
        rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.SOA, text)
        return dns.rrset.from_rdata_list(dns.name.from_text(zone.name), 1800, [rdata])


def _is_empty_non_terminal(qname: str, by_name: dict[str, list[dict[str, Any]]], zone_name: str) -> bool:
    return qname == zone_name or any(n.endswith("." + qname) for n in by_name)


def _wildcard_match(
    qname: str, by_name: dict[str, list[dict[str, Any]]], zone_name: str
) -> list[dict[str, Any]] | None:
    """RFC 4592 in short: find the closest existing ancestor; a ``*`` directly under it answers for qname."""
    labels = qname.split(".")
    for i in range(1, len(labels)):
        ancestor = ".".join(labels[i:])
        if not (ancestor == zone_name or ancestor.endswith("." + zone_name)):
            return None
        if ancestor in by_name or _is_empty_non_terminal(ancestor, by_name, zone_name):
            return by_name.get(f"*.{ancestor}")
    return None


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf
