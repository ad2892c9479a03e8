"""A loopback fake of the Hetzner Cloud API (https://docs.hetzner.cloud), the part the Hub uses.

Endpoints (under ``/v1``, ``Authorization: Bearer <token>``):
  GET    /server_types?name=               {server_types, meta.pagination}  (the real types, sizes and prices)
  POST   /servers                          201 {server, action, next_actions, root_password}
  GET    /servers?name=&label_selector=&status=&page=&per_page=   {servers, meta.pagination}
  GET    /servers/{id}                     {server}
  DELETE /servers/{id}                     200 {action}
  POST   /servers/{id}/actions/create_image 201 {image, action}
  GET    /images?type=&label_selector=&page=&per_page=   {images, meta.pagination}
  GET    /images/{id}                      {image}
  DELETE /images/{id}                      204 (no body)
  GET    /actions/{id}                     {action}   (status running → success | error)

Errors use Hetzner's envelope ``{"error": {"code", "message", "details"}}`` with its status codes (400
invalid_input/json_error, 401 unauthorized, 404 not_found, 409 uniqueness_error, 429 rate_limit_exceeded, 5xx).
Every response carries ``RateLimit-Limit/Remaining/Reset``; an injected 429 may add ``Retry-After``.

Tests drive it through attributes: ``servers``, ``requests``, ``create_requests`` (``creates``), ``deleted``,
``images``, ``deleted_images``;
``action_polls`` (GETs of an action before it finishes), ``action_seconds`` (and the least time it runs),
``hold_actions`` (while set, every action keeps running: a test releases it once it has done its part),
``fail_create_actions`` (create actions end in error),
and :meth:`inject` for one-off HTTP failures, optionally *after* the request took effect (a 5xx that lies).
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from letsbe_fakes.state import StateFile, saving_after_each_request

EU, ALL = ("fsn1", "nbg1", "hel1"), ("fsn1", "nbg1", "hel1", "ash", "hil")
# (id, vCPUs, RAM GB, disk GB, cpu_type, architecture, locations, EUR/hour net, EUR/month net), as Hetzner lists
# them (https://www.hetzner.com/cloud, GET /server_types). The shared Intel (cx) and Arm (cax) types are sold in
# the EU only. Hetzner's US prices are higher; the fake uses the EU price list everywhere.
_TYPES: dict[str, tuple[int, int, float, int, str, str, tuple[str, ...], str, str]] = {
    "cx22": (104, 2, 4.0, 40, "shared", "x86", EU, "0.0060", "3.79"),
    "cx32": (105, 4, 8.0, 80, "shared", "x86", EU, "0.0108", "6.80"),
    "cx42": (106, 8, 16.0, 160, "shared", "x86", EU, "0.0260", "16.40"),
    "cx52": (107, 16, 32.0, 320, "shared", "x86", EU, "0.0514", "32.40"),
    "cpx11": (22, 2, 2.0, 40, "shared", "x86", ALL, "0.0069", "4.35"),
    "cpx21": (23, 3, 4.0, 80, "shared", "x86", ALL, "0.0120", "7.55"),
    "cpx31": (24, 4, 8.0, 160, "shared", "x86", ALL, "0.0216", "13.60"),
    "cpx41": (25, 8, 16.0, 240, "shared", "x86", ALL, "0.0400", "25.20"),
    "cpx51": (26, 16, 32.0, 360, "shared", "x86", ALL, "0.0871", "54.90"),
    "cax11": (45, 2, 4.0, 40, "shared", "arm", EU, "0.0060", "3.79"),
    "cax21": (93, 4, 8.0, 80, "shared", "arm", EU, "0.0103", "6.49"),
    "cax31": (94, 8, 16.0, 160, "shared", "arm", EU, "0.0198", "12.49"),
    "cax41": (95, 16, 32.0, 320, "shared", "arm", EU, "0.0389", "24.49"),
    "ccx13": (96, 2, 8.0, 80, "dedicated", "x86", ALL, "0.0198", "12.49"),
    "ccx23": (97, 4, 16.0, 160, "dedicated", "x86", ALL, "0.0389", "24.49"),
    "ccx33": (98, 8, 32.0, 240, "dedicated", "x86", ALL, "0.0770", "48.49"),
    "ccx43": (99, 16, 64.0, 360, "dedicated", "x86", ALL, "0.1532", "96.49"),
    "ccx53": (100, 32, 128.0, 600, "dedicated", "x86", ALL, "0.3055", "192.49"),
    "ccx63": (101, 48, 192.0, 960, "dedicated", "x86", ALL, "0.4578", "288.49"),
}


def _gross(net: str) -> str:
    return f"{float(net) * 1.19:.4f}"


def _server_type(name: str) -> dict[str, Any]:
    """One server type in the shape of Hetzner's ``GET /server_types``."""
    tid, cores, memory, disk, cpu_type, arch, locations, hourly, monthly = _TYPES[name]
    return {
        "id": tid,
        "name": name,
        "description": name.upper(),
        "cores": cores,
        "memory": memory,
        "disk": disk,
        "deprecated": False,
        "deprecation": None,
        "prices": [
            {
                "location": loc,
                "price_hourly": {"net": hourly, "gross": _gross(hourly)},
                "price_monthly": {"net": monthly, "gross": _gross(monthly)},
                "included_traffic": 21990232555520 if loc in EU else 1099511627776,
                "price_per_tb_traffic": {"net": "1.0000", "gross": "1.1900"},
            }
            for loc in locations
        ],
        "storage_type": "local",
        "cpu_type": cpu_type,
        "architecture": arch,
    }


SERVER_TYPES: dict[str, dict[str, Any]] = {name: _server_type(name) for name in _TYPES}
LOCATIONS: dict[str, dict[str, str]] = {
    "nbg1": {"city": "Nuremberg", "country": "DE", "network_zone": "eu-central", "datacenter": "nbg1-dc3"},
    "fsn1": {"city": "Falkenstein", "country": "DE", "network_zone": "eu-central", "datacenter": "fsn1-dc14"},
    "hel1": {"city": "Helsinki", "country": "FI", "network_zone": "eu-central", "datacenter": "hel1-dc2"},
    "ash": {"city": "Ashburn, VA", "country": "US", "network_zone": "us-east", "datacenter": "ash-dc1"},
    "hil": {"city": "Hillsboro, OR", "country": "US", "network_zone": "us-west", "datacenter": "hil-dc1"},
}
IMAGES = {"debian-12": ("debian", "12"), "debian-11": ("debian", "11"), "ubuntu-24.04": ("ubuntu", "24.04")}
_LABEL = r"[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,63}}$){_LABEL}(\.{_LABEL})*$")
_LABEL_KEY = re.compile(r"^([a-z0-9A-Z.-]{1,253}/)?[a-z0-9A-Z]([a-z0-9A-Z._-]{0,61}[a-z0-9A-Z])?$")
_LABEL_VALUE = re.compile(r"^([a-z0-9A-Z]([a-z0-9A-Z._-]{0,61}[a-z0-9A-Z])?)?$")
RATE_LIMIT = 3600


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class Injection:
    method: str
    path: re.Pattern[str]
    status: int
    code: str
    message: str
    times: int
    retry_after: int | None
    after_apply: bool


class HetznerError(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None):
        self.status, self.code, self.message, self.details = status, code, message, details


class FakeHetzner:
    def __init__(
        self,
        token: str = "hetzner-test-token",  # noqa: S107 - a fake's well-known test token
        *,
        server_ipv4: str = "127.0.0.1",
        action_polls: int = 1,
        known_ssh_keys: set[str] | None = None,
        ipv4_per_server: bool = False,
        first_ipv4: int = 2,
        state_dir: Path | None = None,
        on_create: Callable[[dict[str, Any]], None] | None = None,
        on_delete: Callable[[dict[str, Any]], None] | None = None,
    ):
        """``ipv4_per_server``: every server gets its own loopback address instead of ``server_ipv4``: 127.0.0.N
        from N = ``first_ipv4`` up (127.0.0.2, …; a larger ``first_ipv4`` reaches into 127.x.y.z), up to .254 of
        that /24, then creating a server fails as at Hetzner's project limit.
        ``state_dir``: servers, images, actions and the id counters survive a restart.
        ``on_create``/``on_delete``: told about each server created/deleted (the sandbox starts its VPS)."""
        self.token = token
        self.server_ipv4 = server_ipv4
        self.ipv4_per_server = ipv4_per_server
        self.on_create, self.on_delete = on_create, on_delete
        self.action_polls = action_polls
        self.action_seconds = 0.0
        self.hold_actions = False
        self.known_ssh_keys = known_ssh_keys
        self.fail_create_actions = False
        self.servers: dict[int, dict[str, Any]] = {}
        self.actions: dict[int, dict[str, Any]] = {}
        self.images: dict[int, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.create_requests: list[dict[str, Any]] = []
        self.deleted: list[dict[str, Any]] = []
        self.deleted_images: list[dict[str, Any]] = []
        self._pending: dict[int, int] = {}  # action id -> polls left
        self._due: dict[int, float] = {}  # action id -> monotonic time before which it is still running
        self._on_finish: dict[int, tuple[str, int]] = {}  # action id -> (what, resource id)
        self._injections: list[Injection] = []
        self._ids = itertools.count(1000)
        if not 0 < first_ipv4 & 255 < 255:
            raise ValueError("first_ipv4 must be .1 to .254 of its /24")
        self._next_ip = first_ipv4  # 127.0.0.1 is the machine itself
        self._lock = threading.Lock()
        self._state = StateFile(state_dir / "hetzner.json") if state_dir else None
        if self._state is not None:
            self._restore(self._state.load())
        self.app = Starlette(
            routes=[
                Route("/v1/server_types", self._server_types, methods=["GET"]),
                Route("/v1/servers", self._servers, methods=["GET", "POST"]),
                Route("/v1/servers/{id:int}", self._server, methods=["GET", "DELETE"]),
                Route("/v1/servers/{id:int}/actions/create_image", self._create_image, methods=["POST"]),
                Route("/v1/images", self._list_images, methods=["GET"]),
                Route("/v1/images/{id:int}", self._image, methods=["GET", "DELETE"]),
                Route("/v1/actions/{id:int}", self._action, methods=["GET"]),
            ]
        )
        if self._state is not None:
            self.app = saving_after_each_request(self.app, self.save_state)

    # --- state across restarts ----------------------------------------------------------------------------------

    def save_state(self) -> None:
        assert self._state is not None
        with self._lock:
            ids = next(self._ids)
            self._ids = itertools.count(ids)  # peeked, not used
            data = {
                "next_id": ids,
                "next_ip": self._next_ip,
                "servers": list(self.servers.values()),
                "images": list(self.images.values()),
                "actions": list(self.actions.values()),
                "pending": {str(k): v for k, v in self._pending.items()},
                "on_finish": {str(k): list(v) for k, v in self._on_finish.items()},
            }
            self._state.save(data)

    def _restore(self, data: dict[str, Any] | None) -> None:
        if not data:
            return
        self._ids = itertools.count(int(data["next_id"]))
        self._next_ip = int(data["next_ip"])
        self.servers = {int(s["id"]): s for s in data["servers"]}
        self.images = {int(i["id"]): i for i in data["images"]}
        self.actions = {int(a["id"]): a for a in data["actions"]}
        self._pending = {int(k): int(v) for k, v in data["pending"].items()}
        self._on_finish = {int(k): (v[0], int(v[1])) for k, v in data["on_finish"].items()}

    def _new_ipv4(self) -> str:
        if not self.ipv4_per_server:
            return self.server_ipv4
        # 127.0.0.0/8 is all loopback on Linux. Addresses come from the /24 that first_ipv4 is in (.1 to .254):
        # the next /24 may be another sandbox's, so past .254 the project is full, as Hetzner answers at its limit.
        n = self._next_ip
        if n & 255 == 255:
            raise HetznerError(403, "resource_limit_exceeded", "server limit exceeded for this project")
        self._next_ip = n + 1
        return f"127.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"

    # --- test controls --------------------------------------------------------------------------------------------

    @property
    def creates(self) -> int:
        """How many servers POST /servers actually created."""
        return len(self.create_requests)

    def inject(
        self,
        method: str,
        path: str,
        status: int,
        *,
        code: str | None = None,
        message: str | None = None,
        times: int = 1,
        retry_after: int | None = None,
        after_apply: bool = False,
    ) -> None:
        """Answer the next ``times`` requests matching ``method`` and ``path`` (a regex on the path, e.g.
        ``/v1/servers``) with an error. ``after_apply``: do the work first, then answer with the error anyway."""
        default = {429: "rate_limit_exceeded", 409: "conflict", 404: "not_found", 503: "unavailable"}
        with self._lock:
            self._injections.append(
                Injection(
                    method=method.upper(),
                    path=re.compile(path),
                    status=status,
                    code=code or default.get(status, "server_error" if status >= 500 else "invalid_input"),
                    message=message or f"injected {status}",
                    times=times,
                    retry_after=retry_after,
                    after_apply=after_apply,
                )
            )

    def clear_injections(self) -> None:
        with self._lock:
            self._injections.clear()

    # --- plumbing ---------------------------------------------------------------------------------------------------

    def _take_injection(self, request: Request) -> Injection | None:
        with self._lock:
            for inj in self._injections:
                if inj.method == request.method and inj.path.fullmatch(request.url.path):
                    inj.times -= 1
                    if inj.times <= 0:
                        self._injections.remove(inj)
                    return inj
        return None

    def _headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(RATE_LIMIT),
            "RateLimit-Remaining": str(max(0, RATE_LIMIT - len(self.requests))),
            "RateLimit-Reset": str(int(time.time()) + 3600),
        }

    def _error(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> JSONResponse:
        headers = self._headers()
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        body = {"error": {"code": code, "message": message, "details": details or {}}}
        return JSONResponse(body, status_code=status, headers=headers)

    async def _guard(self, request: Request, handler: Any) -> Response:
        with self._lock:
            self.requests.append((request.method, request.url.path))
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return self._error(401, "unauthorized", "unable to authenticate")
        inj = self._take_injection(request)
        if inj is not None and not inj.after_apply:
            return self._error(inj.status, inj.code, inj.message, retry_after=inj.retry_after)
        try:
            status, body = await handler()
        except HetznerError as exc:
            return self._error(exc.status, exc.code, exc.message, exc.details)
        if inj is not None:
            return self._error(inj.status, inj.code, inj.message, retry_after=inj.retry_after)
        if status == 204:
            return Response(status_code=204, headers=self._headers())
        return JSONResponse(body, status_code=status, headers=self._headers())

    async def _json(self, request: Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            raise HetznerError(400, "json_error", "invalid JSON in request body") from None
        if not isinstance(body, dict):
            raise HetznerError(400, "json_error", "request body must be a JSON object")
        return body

    def _new_action(self, command: str, resource_id: int, on_finish: str | None = None) -> dict[str, Any]:
        action_id = next(self._ids)
        action = {
            "id": action_id,
            "command": command,
            "status": "running",
            "progress": 0,
            "started": _now(),
            "finished": None,
            "resources": [{"id": resource_id, "type": "image" if command == "create_image" else "server"}],
            "error": None,
        }
        self.actions[action_id] = action
        self._pending[action_id] = self.action_polls
        if self.action_seconds:
            self._due[action_id] = time.monotonic() + self.action_seconds
        if on_finish:
            self._on_finish[action_id] = (on_finish, resource_id)
        return action

    def _advance(self, action_id: int) -> None:
        """One poll of a running action; after ``action_polls`` polls and ``action_seconds`` it finishes (with its
        side effects)."""
        action = self.actions[action_id]
        if action["status"] != "running":
            return
        self._pending[action_id] -= 1
        if self._pending[action_id] > 0 or time.monotonic() < self._due.get(action_id, 0.0) or self.hold_actions:
            action["progress"] = min(90, action["progress"] + 30)
            return
        self._due.pop(action_id, None)
        what, rid = self._on_finish.pop(action_id, ("", 0))
        if what == "server_running" and self.fail_create_actions:
            action.update(status="error", error={"code": "action_failed", "message": "Action failed"})
            if rid in self.servers:
                self.servers[rid]["status"] = "off"
        else:
            action["status"] = "success"
            if what == "server_running" and rid in self.servers:
                self.servers[rid]["status"] = "running"
            if what == "image_available" and rid in self.images:
                self.images[rid]["status"] = "available"
        action.update(progress=100, finished=_now())

    # --- servers ----------------------------------------------------------------------------------------------------

    async def _servers(self, request: Request) -> Response:
        if request.method == "POST":
            return await self._guard(request, lambda: self._create_server(request))
        return await self._guard(request, lambda: self._list_servers(request))

    async def _create_server(self, request: Request) -> tuple[int, dict[str, Any]]:
        body = await self._json(request)
        name, stype, image = body.get("name"), body.get("server_type"), body.get("image")
        location = body.get("location") or "nbg1"
        problems: list[tuple[str, str]] = []
        if not isinstance(name, str) or not _HOSTNAME.match(name):
            problems.append(("name", "must be a valid hostname"))
        if stype not in SERVER_TYPES:
            problems.append(("server_type", "server type not found"))
        elif location in LOCATIONS and location not in {p["location"] for p in SERVER_TYPES[stype]["prices"]}:
            problems.append(("server_type", f"server type {stype} is not available in {location}"))
        if image not in IMAGES:
            problems.append(("image", "image not found"))
        if location not in LOCATIONS:
            problems.append(("location", "location not found"))
        user_data = body.get("user_data")
        if user_data is not None and (not isinstance(user_data, str) or len(user_data) > 32 * 1024):
            problems.append(("user_data", "must be a string of at most 32 KiB"))
        labels = body.get("labels") or {}
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and _LABEL_KEY.match(k) and isinstance(v, str) and _LABEL_VALUE.match(v)
            for k, v in labels.items()
        ):
            problems.append(("labels", "invalid label"))
        ssh_keys = body.get("ssh_keys") or []
        if not isinstance(ssh_keys, list) or (
            self.known_ssh_keys is not None and any(str(k) not in self.known_ssh_keys for k in ssh_keys)
        ):
            problems.append(("ssh_keys", "ssh key not found"))
        if problems:
            field = problems[0][0]
            raise HetznerError(
                400,
                "invalid_input",
                f"invalid input in field '{field}'",
                {"fields": [{"name": f, "messages": [m]} for f, m in problems]},
            )
        with self._lock:
            if any(s["name"] == name for s in self.servers.values()):
                raise HetznerError(
                    409, "uniqueness_error", "server name is already used", {"fields": [{"name": "name"}]}
                )
            sid = next(self._ids)
            server = self._server_json(sid, name, stype, image, location, labels)
            self.servers[sid] = server
            self.create_requests.append(body)
            action = self._new_action("create_server", sid, on_finish="server_running")
            start = self._new_action("start_server", sid)
        if self.on_create is not None:
            self.on_create(server)
        return 201, {
            "server": server,
            "action": action,
            "next_actions": [start],
            "root_password": None if ssh_keys else secrets.token_urlsafe(12),
        }

    def _server_json(
        self, sid: int, name: str, stype: str, image: str, location: str, labels: dict[str, str]
    ) -> dict[str, Any]:
        loc = LOCATIONS[location]
        flavor, version = IMAGES[image]
        return {
            "id": sid,
            "name": name,
            "status": "initializing",
            "created": _now(),
            "public_net": {
                "ipv4": {"id": sid, "ip": self._new_ipv4(), "blocked": False, "dns_ptr": f"static.{sid}.example"},
                "ipv6": {"id": sid, "ip": f"2001:db8:{sid % 0xFFFF:x}::/64", "blocked": False, "dns_ptr": []},
                "floating_ips": [],
                "firewalls": [],
            },
            "private_net": [],
            "server_type": SERVER_TYPES[stype],
            "datacenter": {
                "id": 1,
                "name": loc["datacenter"],
                "description": loc["datacenter"],
                "location": {
                    "id": list(LOCATIONS).index(location) + 1,
                    "name": location,
                    "city": loc["city"],
                    "country": loc["country"],
                    "network_zone": loc["network_zone"],
                },
            },
            "image": {
                "id": list(IMAGES).index(image) + 1,
                "type": "system",
                "name": image,
                "os_flavor": flavor,
                "os_version": version,
            },
            "iso": None,
            "rescue_enabled": False,
            "locked": False,
            "backup_window": None,
            "outgoing_traffic": 0,
            "ingoing_traffic": 0,
            "included_traffic": 21990232555520,
            "protection": {"delete": False, "rebuild": False},
            "labels": dict(labels),
            "volumes": [],
            "load_balancers": [],
            "primary_disk_size": SERVER_TYPES[stype]["disk"],
            "placement_group": None,
        }

    async def _list_servers(self, request: Request) -> tuple[int, dict[str, Any]]:
        q = request.query_params
        try:
            page = int(q.get("page", "1"))
            per_page = int(q.get("per_page", "25"))
        except ValueError:
            raise HetznerError(400, "invalid_input", "page and per_page must be integers") from None
        if page < 1 or not 1 <= per_page <= 50:
            raise HetznerError(400, "invalid_input", "page must be >= 1 and per_page between 1 and 50")
        with self._lock:
            servers = sorted(self.servers.values(), key=lambda s: s["id"])
        if name := q.get("name"):
            servers = [s for s in servers if s["name"] == name]
        if statuses := q.getlist("status"):
            servers = [s for s in servers if s["status"] in statuses]
        if selector := q.get("label_selector"):
            servers = [s for s in servers if _matches(selector, s["labels"])]
        total = len(servers)
        last = max(1, -(-total // per_page))
        chunk = servers[(page - 1) * per_page : page * per_page]
        return 200, {
            "servers": chunk,
            "meta": {
                "pagination": {
                    "page": page,
                    "per_page": per_page,
                    "previous_page": page - 1 if page > 1 else None,
                    "next_page": page + 1 if page < last else None,
                    "last_page": last,
                    "total_entries": total,
                }
            },
        }

    async def _server(self, request: Request) -> Response:
        sid = request.path_params["id"]

        async def get() -> tuple[int, dict[str, Any]]:
            with self._lock:
                if sid not in self.servers:
                    raise HetznerError(404, "not_found", f"server with ID '{sid}' not found")
                # A server's own status moves on with its create action, as on the real API.
                for aid, (what, rid) in list(self._on_finish.items()):
                    if rid == sid and what == "server_running":
                        self._advance(aid)
                return 200, {"server": self.servers[sid]}

        async def delete() -> tuple[int, dict[str, Any]]:
            with self._lock:
                server = self.servers.pop(sid, None)
                if server is None:
                    raise HetznerError(404, "not_found", f"server with ID '{sid}' not found")
                server["status"] = "deleting"
                self.deleted.append(server)
                for aid, (_, rid) in list(self._on_finish.items()):
                    if rid == sid:
                        self._on_finish.pop(aid)
                        self.actions[aid].update(
                            status="error", error={"code": "server_deleted", "message": "server was deleted"}
                        )
                action = self._new_action("delete_server", sid)
            if self.on_delete is not None:
                self.on_delete(server)
            return 200, {"action": action}

        return await self._guard(request, get if request.method == "GET" else delete)

    async def _server_types(self, request: Request) -> Response:
        async def list_types() -> tuple[int, dict[str, Any]]:
            name = request.query_params.get("name")
            types = [t for t in SERVER_TYPES.values() if name is None or t["name"] == name]
            pagination = {"page": 1, "per_page": 50, "previous_page": None, "next_page": None, "last_page": 1}
            return 200, {"server_types": types, "meta": {"pagination": {**pagination, "total_entries": len(types)}}}

        return await self._guard(request, list_types)

    async def _create_image(self, request: Request) -> Response:
        sid = request.path_params["id"]

        async def create() -> tuple[int, dict[str, Any]]:
            body = await self._json(request)
            kind = body.get("type", "snapshot")
            if kind not in ("snapshot", "backup"):
                raise HetznerError(400, "invalid_input", "invalid input in field 'type'")
            with self._lock:
                server = self.servers.get(sid)
                if server is None:
                    raise HetznerError(404, "not_found", f"server with ID '{sid}' not found")
                image_id = next(self._ids)
                image = {
                    "id": image_id,
                    "type": kind,
                    "status": "creating",
                    "name": None,
                    "description": body.get("description") or f"{server['name']}-snapshot",
                    "image_size": None,
                    "disk_size": server["primary_disk_size"],
                    "created": _now(),
                    "created_from": {"id": sid, "name": server["name"]},
                    "labels": body.get("labels") or {},
                }
                self.images[image_id] = image
                action = self._new_action("create_image", image_id, on_finish="image_available")
            return 201, {"image": image, "action": action}

        return await self._guard(request, create)

    def _advance_images(self) -> None:
        """An image becomes available when its action finishes, whether or not anyone polls the action."""
        for aid, (what, _rid) in list(self._on_finish.items()):
            if what == "image_available":
                self._advance(aid)

    async def _list_images(self, request: Request) -> Response:
        async def list_images() -> tuple[int, dict[str, Any]]:
            q = request.query_params
            try:
                page, per_page = int(q.get("page", "1")), int(q.get("per_page", "25"))
            except ValueError:
                raise HetznerError(400, "invalid_input", "page and per_page must be integers") from None
            if page < 1 or not 1 <= per_page <= 50:
                raise HetznerError(400, "invalid_input", "page must be >= 1 and per_page between 1 and 50")
            with self._lock:
                self._advance_images()
                images = sorted(self.images.values(), key=lambda i: i["id"])
            if types := q.getlist("type"):
                images = [i for i in images if i["type"] in types]
            if selector := q.get("label_selector"):
                images = [i for i in images if _matches(selector, i["labels"])]
            total, last = len(images), max(1, -(-len(images) // per_page))
            pagination = {
                "page": page,
                "per_page": per_page,
                "previous_page": page - 1 if page > 1 else None,
                "next_page": page + 1 if page < last else None,
                "last_page": last,
                "total_entries": total,
            }
            return 200, {"images": images[(page - 1) * per_page : page * per_page], "meta": {"pagination": pagination}}

        return await self._guard(request, list_images)

    async def _image(self, request: Request) -> Response:
        iid = request.path_params["id"]

        async def get() -> tuple[int, dict[str, Any]]:
            with self._lock:
                if iid not in self.images:
                    raise HetznerError(404, "not_found", f"image with ID '{iid}' not found")
                self._advance_images()
                return 200, {"image": self.images[iid]}

        async def delete() -> tuple[int, dict[str, Any]]:
            with self._lock:
                image = self.images.pop(iid, None)
                if image is None:
                    raise HetznerError(404, "not_found", f"image with ID '{iid}' not found")
                self.deleted_images.append(image)
            return 204, {}

        return await self._guard(request, get if request.method == "GET" else delete)

    async def _action(self, request: Request) -> Response:
        aid = request.path_params["id"]

        async def get() -> tuple[int, dict[str, Any]]:
            with self._lock:
                if aid not in self.actions:
                    raise HetznerError(404, "not_found", f"action with ID '{aid}' not found")
                self._advance(aid)
                return 200, {"action": self.actions[aid]}

        return await self._guard(request, get)


def _matches(selector: str, labels: dict[str, str]) -> bool:
    """Hetzner label selectors: ``k``, ``!k``, ``k=v``, ``k==v``, ``k!=v``, comma-separated (all must hold)."""
    for term in (t.strip() for t in selector.split(",") if t.strip()):
        if "!=" in term:
            k, v = term.split("!=", 1)
            ok = labels.get(k) != v
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            ok = labels.get(k) == v
        elif term.startswith("!"):
            ok = term[1:] not in labels
        else:
            ok = term in labels
        if not ok:
            return False
    return True
