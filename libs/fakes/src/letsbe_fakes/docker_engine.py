"""A fake Docker Engine API on a unix socket: the calls the tenant agents make, in the Engine's wire format.

    with DockerEngineFake(tmp_path / "docker.sock") as docker:
        docker.add_container("openclaw", "registry.letsbe.biz/openclaw@sha256:aaa…")
        docker.fail_health("registry.letsbe.biz/openclaw@sha256:bbb…")   # containers of this image go unhealthy
        ...
        docker.containers, docker.requests                                 # for assertions

Endpoints (optionally under a /v1.NN prefix): POST /images/create (a JSON-lines progress stream; failures come
inside the stream with status 200, as the real engine does), GET /containers/json, GET /containers/{id}/json,
POST /containers/create?name=, POST /containers/{id}/start|stop, DELETE /containers/{id}; errors are
``{"message": …}`` with the engine's status codes (404 no such container/image, 409 name in use, 304 already).
A container with a ``Healthcheck`` is ``starting`` for ``health_delay`` seconds after it starts, then ``healthy`` —
or ``unhealthy`` when its image was marked with :meth:`fail_health`.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from letsbe_fakes.server import QuickServer

_PREFIX = re.compile(r"^/v1\.\d+")


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _err(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


class DockerEngineFake:
    def __init__(self, socket_path: Path, *, health_delay: float = 0.2):
        self.socket_path = Path(socket_path)
        self.health_delay = health_delay
        self.images: dict[str, dict[str, Any]] = {}  # reference -> image
        self.containers: dict[str, dict[str, Any]] = {}  # id -> container
        self.requests: list[tuple[str, str]] = []
        self.unhealthy_images: set[str] = set()
        self.crashing_images: set[str] = set()  # containers exit right after start
        self.image_health_delay: dict[str, float] = {}  # per image, instead of health_delay
        self.failing_pulls: dict[str, str] = {}  # reference -> error message
        self._lock = threading.RLock()
        self.app = self._build_app()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # --- test controls -------------------------------------------------------------------------------------

    def add_image(self, reference: str) -> dict[str, Any]:
        with self._lock:
            if reference not in self.images:
                image_id = "sha256:" + hashlib.sha256(reference.encode()).hexdigest()
                digest = reference.partition("@")[2]
                self.images[reference] = {"Id": image_id, "RepoTags": [], "RepoDigests": [reference] if digest else []}
            return self.images[reference]

    def add_container(
        self,
        name: str,
        image: str,
        *,
        healthcheck: bool = True,
        running: bool = True,
        labels: dict[str, str] | None = None,
    ) -> str:
        self.add_image(image)
        config: dict[str, Any] = {"Image": image, "Env": ["A=1"], "Labels": labels or {}}
        if healthcheck:
            config["Healthcheck"] = {"Test": ["CMD", "true"], "Interval": 1_000_000_000}
        cid = self._create(name, config)
        if running:
            self._start(cid)
            self.containers[cid]["State"]["StartedAt"] = _now()
            self.containers[cid]["_started"] = time.monotonic() - self.health_delay  # healthy already
        return cid

    def fail_health(self, image: str) -> None:
        self.unhealthy_images.add(image)

    def fail_pull(self, reference: str, message: str = "manifest unknown") -> None:
        self.failing_pulls[reference] = message

    def by_name(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            for c in self.containers.values():
                if c["Name"] == "/" + name:
                    return self._view(c)
        return None

    # --- server --------------------------------------------------------------------------------------------

    def start(self) -> DockerEngineFake:
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)
        self._server = QuickServer(
            uvicorn.Config(self.app, uds=str(self.socket_path), log_level="warning", lifespan="off", access_log=False)
        )
        self._thread = self._server.start_in_thread("fake-docker")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.socket_path.unlink(missing_ok=True)

    def __enter__(self) -> DockerEngineFake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the engine's behaviour ----------------------------------------------------------------------------

    def _find(self, ref: str) -> dict[str, Any] | None:
        with self._lock:
            if ref in self.containers:
                return self.containers[ref]
            for c in self.containers.values():
                if c["Name"] == "/" + ref or (len(ref) >= 12 and c["Id"].startswith(ref)):
                    return c
        return None

    def _create(self, name: str, config: dict[str, Any], host_config: dict[str, Any] | None = None) -> str:
        cid = uuid.uuid4().hex + uuid.uuid4().hex
        image = self.images[config["Image"]]
        self.containers[cid] = {
            "Id": cid,
            "Name": "/" + name,
            "Created": _now(),
            "Image": image["Id"],
            "Config": config,
            "HostConfig": host_config or {"RestartPolicy": {"Name": "unless-stopped"}},
            "RestartCount": 0,
            "State": {
                "Status": "created",
                "Running": False,
                "Paused": False,
                "Restarting": False,
                "OOMKilled": False,
                "Dead": False,
                "Pid": 0,
                "ExitCode": 0,
                "StartedAt": "0001-01-01T00:00:00Z",
            },
            "_started": None,
        }
        return cid

    def _start(self, cid: str) -> None:
        c = self.containers[cid]
        c["State"].update(Status="running", Running=True, Pid=1000 + len(self.containers), StartedAt=_now())
        c["_started"] = time.monotonic()
        if c["Config"]["Image"] in self.crashing_images:
            c["State"].update(Status="exited", Running=False, ExitCode=1, Pid=0)

    def _view(self, c: dict[str, Any]) -> dict[str, Any]:
        state = dict(c["State"])
        if c["Config"].get("Healthcheck") and state["Running"]:
            age = time.monotonic() - (c["_started"] or 0)
            if age < self.image_health_delay.get(c["Config"]["Image"], self.health_delay):
                status = "starting"
            elif c["Config"]["Image"] in self.unhealthy_images:
                status = "unhealthy"
            else:
                status = "healthy"
            state["Health"] = {"Status": status, "FailingStreak": 3 if status == "unhealthy" else 0, "Log": []}
        return {k: v for k, v in c.items() if not k.startswith("_")} | {"State": state}

    def _summary(self, c: dict[str, Any]) -> dict[str, Any]:
        v = self._view(c)
        health = v["State"].get("Health", {}).get("Status")
        status = "Up 1 minute" if v["State"]["Running"] else f"Exited ({v['State']['ExitCode']}) 1 second ago"
        if health:
            status += f" ({'health: starting' if health == 'starting' else health})"
        return {
            "Id": v["Id"],
            "Names": [v["Name"]],
            "Image": v["Config"]["Image"],
            "ImageID": v["Image"],
            "Command": "",
            "Created": 0,
            "State": v["State"]["Status"],
            "Status": status,
            "Labels": v["Config"].get("Labels") or {},
        }

    def _build_app(self) -> FastAPI:
        app = FastAPI()
        fake = self

        @app.middleware("http")
        async def strip_version(request: Request, call_next):
            path = request.scope["path"]
            stripped = _PREFIX.sub("", path)
            request.scope["path"] = stripped or "/"
            with fake._lock:
                fake.requests.append((request.method, stripped))
            return await call_next(request)

        @app.get("/_ping")
        async def ping() -> Response:
            return Response("OK", media_type="text/plain")

        @app.post("/images/create")
        async def pull(fromImage: str, tag: str = "") -> Response:
            reference = fromImage if not tag else f"{fromImage}{'@' if tag.startswith('sha256:') else ':'}{tag}"

            def stream():
                yield json.dumps({"status": f"Pulling from {reference.split('@')[0]}"}) + "\r\n"
                if reference in fake.failing_pulls:
                    msg = fake.failing_pulls[reference]
                    yield json.dumps({"errorDetail": {"message": msg}, "error": msg}) + "\r\n"
                    return
                with fake._lock:
                    fake.add_image(reference)
                yield json.dumps({"status": f"Digest: {reference.partition('@')[2]}"}) + "\r\n"
                yield json.dumps({"status": f"Status: Downloaded newer image for {reference}"}) + "\r\n"

            return StreamingResponse(stream(), media_type="application/json")

        @app.get("/containers/json")
        async def list_containers(all: str = "false") -> list[dict[str, Any]]:
            with fake._lock:
                cs = [c for c in fake.containers.values() if all in ("1", "true") or c["State"]["Running"]]
                return [fake._summary(c) for c in cs]

        @app.get("/containers/{ref}/json")
        async def inspect(ref: str) -> Response:
            with fake._lock:
                c = fake._find(ref)
                if c is None:
                    return _err(404, f"No such container: {ref}")
                return JSONResponse(fake._view(c))

        @app.post("/containers/create")
        async def create(request: Request, name: str = "") -> Response:
            body = await request.json()
            if not isinstance(body, dict) or not body.get("Image"):
                return _err(400, "config cannot be empty in order to create a container")
            with fake._lock:
                if name and fake._find(name) is not None:
                    return _err(409, f'Conflict. The container name "/{name}" is already in use.')
                if body["Image"] not in fake.images:
                    return _err(404, f"No such image: {body['Image']}")
                host_config = body.pop("HostConfig", None)
                body.pop("NetworkingConfig", None)
                cid = fake._create(name or uuid.uuid4().hex[:12], body, host_config)
            return JSONResponse({"Id": cid, "Warnings": []}, status_code=201)

        @app.post("/containers/{ref}/start")
        async def start(ref: str) -> Response:
            with fake._lock:
                c = fake._find(ref)
                if c is None:
                    return _err(404, f"No such container: {ref}")
                if c["State"]["Running"]:
                    return Response(status_code=304)
                fake._start(c["Id"])
            return Response(status_code=204)

        @app.post("/containers/{ref}/stop")
        async def stop(ref: str, t: int = 10) -> Response:
            with fake._lock:
                c = fake._find(ref)
                if c is None:
                    return _err(404, f"No such container: {ref}")
                if not c["State"]["Running"]:
                    return Response(status_code=304)
                c["State"].update(Status="exited", Running=False, Pid=0, ExitCode=0)
            return Response(status_code=204)

        @app.delete("/containers/{ref}")
        async def remove(ref: str, force: str = "false") -> Response:
            with fake._lock:
                c = fake._find(ref)
                if c is None:
                    return _err(404, f"No such container: {ref}")
                if c["State"]["Running"] and force not in ("1", "true"):
                    return _err(409, "You cannot remove a running container. Stop the container before removing")
                del fake.containers[c["Id"]]
            return Response(status_code=204)

        return app
