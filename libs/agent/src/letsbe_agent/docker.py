"""A small Docker Engine API client over the unix socket (httpx's UDS transport): the calls the agent needs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from letsbe_agent.wire import ContainerState
from letsbe_platform.tls import client_context


class DockerError(Exception):
    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class DockerClient:
    def __init__(self, socket: Path, *, api_version: str = "v1.43", timeout: float = 30.0):
        self.socket = socket
        self._http = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(socket), verify=client_context()),  # a unix socket: no TLS
            base_url=f"http://docker/{api_version}",
            timeout=timeout,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kw: Any) -> httpx.Response:
        try:
            r = await self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise DockerError(f"docker {method} {path}: {type(exc).__name__}: {exc}") from exc
        if r.status_code not in ok:
            try:
                message = r.json().get("message", r.text)
            except ValueError:
                message = r.text
            raise DockerError(f"docker {method} {path}: {r.status_code} {message}", r.status_code)
        return r

    async def list_containers(self) -> list[dict[str, Any]]:
        return (await self._call("GET", "/containers/json", params={"all": "true"})).json()

    async def inspect(self, name_or_id: str) -> dict[str, Any] | None:
        try:
            return (await self._call("GET", f"/containers/{name_or_id}/json")).json()
        except DockerError as exc:
            if exc.status == 404:
                return None
            raise

    async def pull(self, reference: str) -> None:
        """Pull ``repo@sha256:…``. The engine answers 200 and reports failures inside the progress stream."""
        async with self._http.stream("POST", "/images/create", params={"fromImage": reference}, timeout=None) as r:
            if r.status_code != 200:
                body = (await r.aread()).decode(errors="replace")
                raise DockerError(f"pull {reference}: {r.status_code} {body[:300]}", r.status_code)
            async for line in r.aiter_lines():
                if not line.strip():
                    continue
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if "error" in msg or "errorDetail" in msg:
                    detail = msg.get("errorDetail", {}).get("message") or msg.get("error")
                    raise DockerError(f"pull {reference}: {detail}")

    async def create(self, name: str, config: dict[str, Any]) -> str:
        r = await self._call("POST", "/containers/create", ok=(201,), params={"name": name}, json=config)
        return r.json()["Id"]

    async def start(self, container_id: str) -> None:
        await self._call("POST", f"/containers/{container_id}/start", ok=(204, 304))

    async def stop(self, container_id: str, timeout: int = 10) -> None:
        await self._call("POST", f"/containers/{container_id}/stop", ok=(204, 304), params={"t": timeout})

    async def remove(self, container_id: str, *, force: bool = False) -> None:
        await self._call("DELETE", f"/containers/{container_id}", ok=(204, 404), params={"force": str(force).lower()})

    async def restart(self, container_id: str, timeout: int = 10) -> None:
        await self.stop(container_id, timeout)
        await self.start(container_id)

    async def container_states(self) -> list[ContainerState]:
        """For the heartbeat's heavy part: state, health, restarts, OOM kills and image digest per container."""
        states = []
        for summary in await self.list_containers():
            info = await self.inspect(summary["Id"])
            if info is None:  # removed in between
                continue
            state = info.get("State", {})
            image_ref = info.get("Config", {}).get("Image", summary.get("Image", ""))
            digest = image_ref.split("@", 1)[1] if "@" in image_ref else info.get("Image")
            states.append(
                ContainerState(
                    name=info.get("Name", "").lstrip("/") or summary["Id"][:12],
                    image=image_ref[:500],
                    image_digest=(digest or None) and digest[:200],
                    state=state.get("Status", "unknown")[:40],
                    health=_health(state),
                    restart_count=int(info.get("RestartCount", 0)),
                    oom_killed=bool(state.get("OOMKilled", False)),
                )
            )
        return states

    async def image_versions(self) -> dict[str, str]:
        """Container name -> the version its image declares (the OCI ``org.opencontainers.image.version`` label)."""
        out = {}
        for summary in await self.list_containers():
            version = (summary.get("Labels") or {}).get("org.opencontainers.image.version")
            names = summary.get("Names") or []
            if version and names:
                out[names[0].lstrip("/")] = str(version)[:64]
        return out


def _health(state: dict[str, Any]) -> str:
    status = (state.get("Health") or {}).get("Status")
    return status if status in ("healthy", "unhealthy", "starting") else "none"


# The parts of an inspected container that recreate it (what `docker run` was given).
_CONFIG_KEYS = ("Env", "Cmd", "Entrypoint", "Labels", "ExposedPorts", "Healthcheck", "WorkingDir", "User", "Volumes")


def create_body(inspected: dict[str, Any], image: str) -> dict[str, Any]:
    """The /containers/create body that recreates ``inspected`` with another image."""
    config = inspected.get("Config", {})
    body: dict[str, Any] = {k: config[k] for k in _CONFIG_KEYS if config.get(k) is not None}
    body["Image"] = image
    if inspected.get("HostConfig"):
        body["HostConfig"] = inspected["HostConfig"]
    networks = (inspected.get("NetworkSettings") or {}).get("Networks")
    if networks:
        body["NetworkingConfig"] = {"EndpointsConfig": {n: {"Aliases": v.get("Aliases")} for n, v in networks.items()}}
    return body
