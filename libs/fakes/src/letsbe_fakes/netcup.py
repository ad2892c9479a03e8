"""A loopback fake of netcup's Server Control Panel (SCP) REST API: server status, snapshots and OS reinstalls.

Modelled on netcup's published OpenAPI spec ("SCP (Server Control Panel) REST API", served by SCP itself at
``/scp-core/api/v1/openapi``) and its authentication guide:

  POST /realms/scp/protocol/openid-connect/token   form: client_id=scp, grant_type=refresh_token, refresh_token
       → {access_token, expires_in: 300, refresh_expires_in: 0, refresh_token, token_type: "Bearer", ...}
       bad refresh token → 400 {"error": "invalid_grant", "error_description": ...} (Keycloak's OAuth error)
  GET  /scp-core/api/ping                                       "OK" (text/plain)
  GET  /scp-core/api/v1/servers?limit=&offset=&name=&q=         [ServerListMinimal]
  GET  /scp-core/api/v1/servers/{serverId}?loadServerLiveInfo=  Server (serverLiveInfo.state: RUNNING, SHUTOFF, …)
  GET  /scp-core/api/v1/servers/{serverId}/snapshots            [SnapshotMinimal]
  POST /scp-core/api/v1/servers/{serverId}/snapshots            {name, description, diskName, onlineSnapshot}
       → 202 TaskInfo
  GET  /scp-core/api/v1/servers/{serverId}/snapshots/{name}     Snapshot
  DELETE /scp-core/api/v1/servers/{serverId}/snapshots/{name}   202 TaskInfo
  GET  /scp-core/api/v1/servers/{serverId}/imageflavours        [ImageFlavour {id, name, alias, text, image}]
  POST /scp-core/api/v1/servers/{serverId}/image                ServerImageSetup {imageFlavourId (required),
       hostname, sshKeyIds, customScript, …} → 202 TaskInfo; the disk is wiped, the server is SHUTOFF while the
       image installs (``install_seconds`` of wall time), then RUNNING again; 422 ValidationError on bad input
  GET  /scp-core/api/v1/tasks                                   [TaskInfo] of the user, newest first
  GET  /scp-core/api/v1/tasks/{uuid}                            TaskInfo (state PENDING/RUNNING → FINISHED/ERROR)

Errors are ResponseError / NotFoundError ``{"code", "message"}`` (404 server not found, 503 "Node is in maintenance
mode"). Not documented, so chosen here: TaskInfo's ``serverId`` (the server a task acts on); the body of a 401
(missing/expired bearer) — ``{"code": "unauthorized", "message": ...}``; the code for a snapshot name already in use
(400 ``server.snapshot.create.error.name``); and
429 with ``Retry-After``, which only :meth:`inject` produces (SCP documents 429 for failover routing only).

``state_dir``: servers, snapshots, tasks and installs survive a restart (the sandbox of ``make run``), and a
reinstall that was running when the fake stopped finishes on time after it starts again, as netcup's would.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from letsbe_fakes.state import StateFile, saving_after_each_request

API = "/scp-core/api"
TOKEN_PATH = "/realms/scp/protocol/openid-connect/token"  # noqa: S105 - a URL path
INSTALL_TASK = "Install image"
IMAGE_FLAVOURS = [
    {"id": 12, "name": "debian-12-minimal", "alias": "Debian 12", "text": "Debian 12 (Bookworm) minimal",
     "image": {"id": 3, "name": "Debian 12"}},
    {"id": 13, "name": "debian-13-minimal", "alias": "Debian 13", "text": "Debian 13 (Trixie) minimal",
     "image": {"id": 4, "name": "Debian 13"}},
    {"id": 21, "name": "ubuntu-2404-minimal", "alias": "Ubuntu 24.04", "text": "Ubuntu 24.04 LTS minimal",
     "image": {"id": 7, "name": "Ubuntu 24.04"}},
]  # fmt: skip
_HOSTNAME = re.compile(r"^(?=.{1,255}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class _Injection:
    method: str
    path: re.Pattern[str]
    status: int
    code: str
    message: str
    times: int
    retry_after: int | None


class ScpError(Exception):
    def __init__(self, status: int, code: str, message: str):
        self.status, self.code, self.message = status, code, message


class FakeNetcup:
    def __init__(
        self,
        refresh_token: str = "netcup-offline-refresh-token",  # noqa: S107 - a fake's well-known test token
        *,
        task_polls: int = 1,
        access_token_seconds: int = 300,
        install_seconds: float = 0.0,
        state_dir: Path | None = None,
        on_reinstall: Callable[[dict[str, Any]], None] | None = None,
    ):
        """``install_seconds``: how long an OS install runs (wall time); ``on_reinstall``: told about each install
        that finished, with the server (the sandbox gives its VPS a new disk and host key)."""
        self.refresh_tokens = {refresh_token}
        self.task_polls = task_polls
        self.access_token_seconds = access_token_seconds
        self.servers: dict[int, dict[str, Any]] = {}
        self.snapshots: dict[int, dict[str, dict[str, Any]]] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.token_requests = 0
        self.fail_snapshot_tasks = False
        self.install_seconds = install_seconds
        self.on_reinstall = on_reinstall
        self.installs: list[dict[str, Any]] = []  # every accepted ServerImageSetup, with its server and task
        self._installing: dict[str, float] = {}  # install task uuid -> wall time it finishes
        self._access: dict[str, float] = {}  # access token -> expiry (monotonic)
        self._pending: dict[str, tuple[int, Any]] = {}  # task uuid -> (polls left, on finish)
        self._injections: list[_Injection] = []
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route(TOKEN_PATH, self._token, methods=["POST"]),
                Route(f"{API}/ping", self._ping, methods=["GET"]),
                Route(f"{API}/v1/servers", self._list_servers, methods=["GET"]),
                Route(f"{API}/v1/servers/{{sid:int}}", self._get_server, methods=["GET"]),
                Route(f"{API}/v1/servers/{{sid:int}}/snapshots", self._snapshots, methods=["GET", "POST"]),
                Route(f"{API}/v1/servers/{{sid:int}}/snapshots/{{name}}", self._snapshot, methods=["GET", "DELETE"]),
                Route(f"{API}/v1/servers/{{sid:int}}/imageflavours", self._image_flavours, methods=["GET"]),
                Route(f"{API}/v1/servers/{{sid:int}}/image", self._install, methods=["POST"]),
                Route(f"{API}/v1/tasks", self._list_tasks, methods=["GET"]),
                Route(f"{API}/v1/tasks/{{uuid}}", self._task, methods=["GET"]),
            ]
        )
        self._state = StateFile(state_dir / "netcup.json") if state_dir else None
        if self._state is not None:
            self._restore(self._state.load())
            self.app = saving_after_each_request(self.app, self.save_state)

    # --- state across restarts ----------------------------------------------------------------------------------

    def save_state(self) -> None:
        assert self._state is not None
        with self._lock:
            data = {
                "servers": list(self.servers.values()),
                "snapshots": {str(k): v for k, v in self.snapshots.items()},
                "tasks": list(self.tasks.values()),
                "installs": self.installs,
                "installing": self._installing,
            }
            self._state.save(data)

    def _restore(self, data: dict[str, Any] | None) -> None:
        if not data:
            return
        self.servers = {int(s["id"]): s for s in data["servers"]}
        self.snapshots = {int(k): v for k, v in data["snapshots"].items()}
        self.tasks = {t["uuid"]: t for t in data["tasks"]}
        self.installs = list(data["installs"])
        self._installing = {k: float(v) for k, v in data["installing"].items()}
        # Snapshot tasks that were polled for are gone with the process: they end as netcup ends an interrupted task.
        for task in self.tasks.values():
            if task["state"] == "RUNNING" and task["uuid"] not in self._installing:
                aborted = {"code": "task.error", "message": "Aborted."}
                task.update(state="ERROR", finishedAt=_now(), responseError=aborted)

    # --- test controls --------------------------------------------------------------------------------------------

    def add_server(
        self,
        server_id: int,
        *,
        name: str | None = None,
        ipv4: str = "127.0.0.1",
        state: str = "RUNNING",
        nickname: str | None = None,
        city: str = "Nuremberg",
    ) -> dict[str, Any]:
        server = {
            "id": server_id,
            "name": name or f"v22025{server_id:012d}",
            "hostname": None,
            "nickname": nickname,
            "disabled": False,
            "template": {"id": 1, "name": "RS 2000 G12"},
            "serverLiveInfo": {
                "state": state,
                "autostart": True,
                "uefi": False,
                "uptimeInSeconds": 3600,
                "cpuCount": 8,
                "currentServerMemoryInMiB": 16384,
                "maxServerMemoryInMiB": 16384,
            },
            "ipv4Addresses": [
                {"id": server_id, "ip": ipv4, "netmask": "255.255.252.0", "gateway": None, "broadcast": None}
            ],
            "ipv6Addresses": [],
            "site": {"id": 1, "city": city},
            "snapshotCount": 0,
            "maxCpuCount": 8,
            "disksAvailableSpaceInMiB": 0,
            "rescueSystemActive": False,
            "snapshotAllowed": True,
            "architecture": "AMD64",
            "gpuDriverAvailable": False,
        }
        with self._lock:
            self.servers[server_id] = server
            self.snapshots.setdefault(server_id, {})
        return server

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
    ) -> None:
        """Answer the next ``times`` requests matching ``method`` and ``path`` (regex) with an error."""
        with self._lock:
            self._injections.append(
                _Injection(
                    method.upper(),
                    re.compile(path),
                    status,
                    code or f"injected.{status}",
                    message or f"injected {status}",
                    times,
                    retry_after,
                )
            )

    def expire_access_tokens(self) -> None:
        with self._lock:
            self._access.clear()

    # --- plumbing ---------------------------------------------------------------------------------------------------

    def _error(self, status: int, code: str, message: str, retry_after: int | None = None) -> JSONResponse:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)

    async def _guard(self, request: Request, handler: Any) -> Response:
        with self._lock:
            self.requests.append((request.method, request.url.path))
            auth = request.headers.get("authorization", "")
            token = auth.removeprefix("Bearer ")
            valid = auth.startswith("Bearer ") and self._access.get(token, 0) > time.monotonic()
            inj = None
            for candidate in self._injections:
                if candidate.method == request.method and candidate.path.fullmatch(request.url.path):
                    inj = candidate
                    break
            if valid and inj is not None:
                inj.times -= 1
                if inj.times <= 0:
                    self._injections.remove(inj)
        if not valid:
            return self._error(401, "unauthorized", "Bearer token missing, invalid or expired.")
        if inj is not None:
            return self._error(inj.status, inj.code, inj.message, inj.retry_after)
        try:
            result = await handler()
        except ScpError as exc:
            return self._error(exc.status, exc.code, exc.message)
        status, body = result
        return JSONResponse(body, status_code=status)

    def _server_or_404(self, sid: int) -> dict[str, Any]:
        server = self.servers.get(sid)
        if server is None:
            raise ScpError(404, "server.not.found", f"Entity Server with id {sid} not found.")
        return server

    def _new_task(self, name: str, sid: int, on_finish: Any) -> dict[str, Any]:
        task = {
            "uuid": str(uuid.uuid4()),
            "name": name,
            "state": "RUNNING",
            "startedAt": _now(),
            "finishedAt": None,
            "executingUser": {"id": 1, "username": "12345"},
            "taskProgress": {"progressInPercent": 0.0, "expectedFinishedAt": _now()},
            "message": None,
            "onRollback": False,
            "steps": [],
            "result": {},
            "responseError": None,
            "serverId": sid,
        }
        self.tasks[task["uuid"]] = task
        self._pending[task["uuid"]] = (self.task_polls, on_finish)
        return task

    # --- routes -----------------------------------------------------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        # application/x-www-form-urlencoded, parsed by hand (no python-multipart needed for this)
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode(), keep_blank_values=True).items()}
        with self._lock:
            self.token_requests += 1
            if form.get("client_id") != "scp" or form.get("grant_type") != "refresh_token":
                return JSONResponse(
                    {"error": "unsupported_grant_type", "error_description": "Unsupported grant"}, status_code=400
                )
            if form.get("refresh_token") not in self.refresh_tokens:
                return JSONResponse(
                    {"error": "invalid_grant", "error_description": "Invalid refresh token"}, status_code=400
                )
            access = secrets.token_urlsafe(24)
            self._access[access] = time.monotonic() + self.access_token_seconds
        return JSONResponse(
            {
                "access_token": access,
                "expires_in": self.access_token_seconds,
                "refresh_expires_in": 0,
                "refresh_token": form.get("refresh_token"),
                "token_type": "Bearer",
                "not-before-policy": 0,
                "session_state": str(uuid.uuid4()),
                "scope": "offline_access email profile",
            }
        )

    async def _ping(self, request: Request) -> Response:
        return PlainTextResponse("OK")

    async def _list_servers(self, request: Request) -> Response:
        async def run() -> tuple[int, Any]:
            q = request.query_params
            try:
                limit = int(q["limit"]) if "limit" in q else None
                offset = int(q.get("offset", "0"))
            except ValueError:
                raise ScpError(422, "validation.error", "limit and offset must be integers") from None
            with self._lock:
                servers = sorted(self.servers.values(), key=lambda s: s["id"])
            if name := q.get("name"):
                servers = [s for s in servers if s["name"] == name]
            if term := q.get("q"):
                t = term.lower()
                servers = [
                    s
                    for s in servers
                    if t in s["name"].lower()
                    or t in (s["nickname"] or "").lower()
                    or any(t in a["ip"] for a in s["ipv4Addresses"])
                ]
            servers = servers[offset : offset + limit if limit is not None else None]
            keys = ("id", "name", "hostname", "nickname", "disabled", "template")
            return 200, [{k: s[k] for k in keys} for s in servers]

        return await self._guard(request, run)

    async def _get_server(self, request: Request) -> Response:
        async def run() -> tuple[int, Any]:
            with self._lock:
                server = dict(self._server_or_404(request.path_params["sid"]))
                server["snapshotCount"] = len(self.snapshots.get(server["id"], {}))
            if request.query_params.get("loadServerLiveInfo", "true") == "false":
                server["serverLiveInfo"] = None
            return 200, server

        return await self._guard(request, run)

    async def _snapshots(self, request: Request) -> Response:
        sid = request.path_params["sid"]

        async def listing() -> tuple[int, Any]:
            with self._lock:
                self._server_or_404(sid)
                return 200, [{k: v for k, v in s.items() if k != "downloadInfos"} for s in self.snapshots[sid].values()]

        async def create() -> tuple[int, Any]:
            try:
                body = await request.json()
            except ValueError:
                raise ScpError(400, "request.body.invalid", "Request body is not valid JSON.") from None
            name = body.get("name") if isinstance(body, dict) else None
            if not isinstance(name, str) or not name.strip() or len(name) > 255:
                raise ScpError(422, "validation.error", "name: must not be blank and at most 255 characters")
            online = bool(body.get("onlineSnapshot", False))
            with self._lock:
                server = self._server_or_404(sid)
                if not server["snapshotAllowed"]:
                    raise ScpError(400, "server.snapshot.create.error.storagelimit", "Snapshot storage limit reached.")
                if name in self.snapshots[sid]:
                    raise ScpError(400, "server.snapshot.create.error.name", f"Snapshot {name} already exists.")
                previous = server["serverLiveInfo"]["state"]
                if online:
                    server["serverLiveInfo"]["state"] = "DISK_SNAPSHOT"
                snapshot = {
                    "uuid": str(uuid.uuid4()),
                    "name": name,
                    "description": body.get("description"),
                    "disks": [body.get("diskName") or "vda"],
                    "creationTime": _now(),
                    "state": previous,
                    "online": online,
                    "exported": False,
                    "exportedSizeInKiB": None,
                }

                def finish(ok: bool) -> None:
                    server["serverLiveInfo"]["state"] = previous
                    if ok:
                        self.snapshots[sid][name] = snapshot

                task = self._new_task("Create snapshot", sid, finish)
            return 202, task

        return await self._guard(request, listing if request.method == "GET" else create)

    async def _snapshot(self, request: Request) -> Response:
        sid, name = request.path_params["sid"], request.path_params["name"]

        async def get() -> tuple[int, Any]:
            with self._lock:
                self._server_or_404(sid)
                snap = self.snapshots[sid].get(name)
                if snap is None:
                    raise ScpError(404, "snapshot.not.found", f"Snapshot {name} not found.")
                return 200, {**snap, "downloadInfos": None}

        async def delete() -> tuple[int, Any]:
            with self._lock:
                self._server_or_404(sid)
                if name not in self.snapshots[sid]:
                    raise ScpError(404, "snapshot.not.found", f"Snapshot {name} not found.")
                return 202, self._new_task(
                    "Delete snapshot", sid, lambda ok: self.snapshots[sid].pop(name, None) if ok else None
                )

        return await self._guard(request, get if request.method == "GET" else delete)

    async def _task(self, request: Request) -> Response:
        task_id = request.path_params["uuid"]

        async def get() -> tuple[int, Any]:
            with self._lock:
                task = self.tasks.get(task_id)
                if task is None:
                    raise ScpError(404, "task.not.found", f"Entity Task with id {task_id} not found.")
                self._advance_install(task)
                if task_id in self._pending:
                    left, on_finish = self._pending[task_id]
                    left -= 1
                    if left > 0:
                        self._pending[task_id] = (left, on_finish)
                        task["taskProgress"]["progressInPercent"] = 50.0
                    else:
                        del self._pending[task_id]
                        ok = not self.fail_snapshot_tasks
                        on_finish(ok)
                        task.update(state="FINISHED" if ok else "ERROR", finishedAt=_now())
                        task["taskProgress"]["progressInPercent"] = 100.0
                        if not ok:
                            task["responseError"] = {"code": "task.error", "message": "Snapshot creation failed."}
                return 200, task

        return await self._guard(request, get)

    # --- OS reinstall ---------------------------------------------------------------------------------------------

    async def _image_flavours(self, request: Request) -> Response:
        async def run() -> tuple[int, Any]:
            with self._lock:
                self._server_or_404(request.path_params["sid"])
            return 200, IMAGE_FLAVOURS

        return await self._guard(request, run)

    async def _install(self, request: Request) -> Response:
        sid = request.path_params["sid"]

        async def run() -> tuple[int, Any]:
            try:
                body = await request.json()
            except ValueError:
                raise ScpError(400, "request.body.invalid", "Request body is not valid JSON.") from None
            if not isinstance(body, dict):
                raise ScpError(422, "validation.error", "body: must be a ServerImageSetup object")
            flavour = body.get("imageFlavourId")
            if not isinstance(flavour, int) or isinstance(flavour, bool):
                raise ScpError(422, "validation.error", "imageFlavourId: must not be null")
            hostname = body.get("hostname")
            if hostname is not None and (not isinstance(hostname, str) or not _HOSTNAME.match(hostname)):
                raise ScpError(422, "validation.error", "hostname: must match the hostname pattern")
            keys = body.get("sshKeyIds", [])
            if not isinstance(keys, list) or not all(isinstance(k, int) and not isinstance(k, bool) for k in keys):
                raise ScpError(422, "validation.error", "sshKeyIds: must be a list of integers")
            with self._lock:
                server = self._server_or_404(sid)
                if not any(f["id"] == flavour for f in IMAGE_FLAVOURS):
                    raise ScpError(400, "server.image.flavour.not.found", f"Image flavour {flavour} not found.")
                if any(self.tasks[t]["serverId"] == sid for t in self._installing):
                    raise ScpError(400, "server.task.running", "Another task is running on this server.")
                server["serverLiveInfo"]["state"] = "SHUTOFF"  # the disk is being wiped
                task = self._new_task(INSTALL_TASK, sid, None)
                del self._pending[task["uuid"]]  # an install runs for wall time, not for a number of polls
                self._installing[task["uuid"]] = time.time() + self.install_seconds
                self.installs.append({"serverId": sid, "task": task["uuid"], "setup": body, "at": _now()})
            return 202, task

        return await self._guard(request, run)

    async def _list_tasks(self, request: Request) -> Response:
        async def run() -> tuple[int, Any]:
            with self._lock:
                for task in self.tasks.values():
                    self._advance_install(task)
                return 200, sorted(self.tasks.values(), key=lambda t: t["startedAt"], reverse=True)

        return await self._guard(request, run)

    def _advance_install(self, task: dict[str, Any]) -> None:
        """An install task finishes once its time is up (checked whenever it is looked at); called under the lock."""
        finish_at = self._installing.get(task["uuid"])
        if finish_at is None:
            return
        if time.time() < finish_at:
            total = max(self.install_seconds, 0.001)
            task["taskProgress"]["progressInPercent"] = round(min(99.0, 100 * (1 - (finish_at - time.time()) / total)))
            return
        del self._installing[task["uuid"]]
        server = self.servers[task["serverId"]]
        server["serverLiveInfo"]["state"] = "RUNNING"
        server["serverLiveInfo"]["uptimeInSeconds"] = 0
        task.update(state="FINISHED", finishedAt=_now())
        task["taskProgress"]["progressInPercent"] = 100.0
        if self.on_reinstall is not None:
            self.on_reinstall(server)
