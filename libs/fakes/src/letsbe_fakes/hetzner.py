"""A loopback fake of the Hetzner Cloud API (https://docs.hetzner.cloud), the part the Hub uses.

Endpoints (under ``/v1``, ``Authorization: Bearer <token>``):
  POST   /servers                          201 {server, action, next_actions, root_password}
  GET    /servers?name=&label_selector=&status=&page=&per_page=   {servers, meta.pagination}
  GET    /servers/{id}                     {server}
  DELETE /servers/{id}                     200 {action}
  POST   /servers/{id}/actions/create_image 201 {image, action}
  GET    /actions/{id}                     {action}   (status running → success | error)

Errors use Hetzner's envelope ``{"error": {"code", "message", "details"}}`` with its status codes (400
invalid_input/json_error, 401 unauthorized, 404 not_found, 409 uniqueness_error, 429 rate_limit_exceeded, 5xx).
Every response carries ``RateLimit-Limit/Remaining/Reset``; an injected 429 may add ``Retry-After``.

Tests drive it through attributes: ``servers``, ``requests``, ``create_requests`` (``creates``), ``deleted``;
``action_polls`` (GETs of an action before it finishes), ``fail_create_actions`` (create actions end in error),
and :meth:`inject` for one-off HTTP failures, optionally *after* the request took effect (a 5xx that lies).
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SERVER_TYPES: dict[str, dict[str, Any]] = {
    "cx22": {"cores": 2, "memory": 4.0, "disk": 40, "cpu_type": "shared"},
    "cpx11": {"cores": 2, "memory": 2.0, "disk": 40, "cpu_type": "shared"},
    "cpx21": {"cores": 3, "memory": 4.0, "disk": 80, "cpu_type": "shared"},
    "cpx31": {"cores": 4, "memory": 8.0, "disk": 160, "cpu_type": "shared"},
    "cpx41": {"cores": 8, "memory": 16.0, "disk": 240, "cpu_type": "shared"},
    "cpx51": {"cores": 16, "memory": 32.0, "disk": 360, "cpu_type": "shared"},
}
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
    ):
        self.token = token
        self.server_ipv4 = server_ipv4
        self.action_polls = action_polls
        self.known_ssh_keys = known_ssh_keys
        self.fail_create_actions = False
        self.servers: dict[int, dict[str, Any]] = {}
        self.actions: dict[int, dict[str, Any]] = {}
        self.images: dict[int, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.create_requests: list[dict[str, Any]] = []
        self.deleted: list[dict[str, Any]] = []
        self._pending: dict[int, int] = {}  # action id -> polls left
        self._on_finish: dict[int, tuple[str, int]] = {}  # action id -> (what, resource id)
        self._injections: list[Injection] = []
        self._ids = itertools.count(1000)
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/v1/servers", self._servers, methods=["GET", "POST"]),
                Route("/v1/servers/{id:int}", self._server, methods=["GET", "DELETE"]),
                Route("/v1/servers/{id:int}/actions/create_image", self._create_image, methods=["POST"]),
                Route("/v1/actions/{id:int}", self._action, methods=["GET"]),
            ]
        )

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
        if on_finish:
            self._on_finish[action_id] = (on_finish, resource_id)
        return action

    def _advance(self, action_id: int) -> None:
        """One poll of a running action; after ``action_polls`` polls it finishes (with its side effects)."""
        action = self.actions[action_id]
        if action["status"] != "running":
            return
        self._pending[action_id] -= 1
        if self._pending[action_id] > 0:
            action["progress"] = min(90, action["progress"] + 30)
            return
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
        spec = SERVER_TYPES[stype]
        flavor, version = IMAGES[image]
        return {
            "id": sid,
            "name": name,
            "status": "initializing",
            "created": _now(),
            "public_net": {
                "ipv4": {"id": sid, "ip": self.server_ipv4, "blocked": False, "dns_ptr": f"static.{sid}.example"},
                "ipv6": {"id": sid, "ip": f"2001:db8:{sid % 0xFFFF:x}::/64", "blocked": False, "dns_ptr": []},
                "floating_ips": [],
                "firewalls": [],
            },
            "private_net": [],
            "server_type": {
                "id": list(SERVER_TYPES).index(stype) + 1,
                "name": stype,
                "description": stype.upper(),
                "storage_type": "local",
                "architecture": "x86",
                **spec,
            },
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
            "primary_disk_size": spec["disk"],
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
                return 200, {"action": self._new_action("delete_server", sid)}

        return await self._guard(request, get if request.method == "GET" else delete)

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
