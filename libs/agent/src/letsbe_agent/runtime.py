"""One agent runtime, two agents: registration, heartbeats, commands, reports.

    agent = start_agent(rt, settings, AgentKind.SAFETY_WRAPPER, __version__)   # in app.start_workers
    agent.commands.register("kill-switch", handler)                            # each agent adds its own commands
    agent_of(rt)                                                               # from a route: request.app.state.runtime

Loops (each survives the hub being away, with exponential backoff and full jitter):
- heartbeat: every interval the hub chose (± jitter): liveness every time, the heavy part when it changed, when
  the hub asks for it, or every ``heartbeat_details_every_seconds``; the answer may carry commands;
- long-poll for commands (so a command starts within a second, not an interval);
- the daily backup check and the hourly usage report, when this agent does those;
- the disk buffer of results and reports is flushed after every successful contact.
A 401 with ``re_enrol`` from any call deletes the credential and registers again (with a new token).
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Gauge

from letsbe_agent import backups
from letsbe_agent.buffer import DiskBuffer
from letsbe_agent.client import HubClient, HubUnavailable, ReEnrolRequired, RegistrationRefused, Rejected
from letsbe_agent.commands import CommandContext, CommandRegistry, Outcome, Registration
from letsbe_agent.credentials import Credential, CredentialStore
from letsbe_agent.docker import DockerClient, DockerError
from letsbe_agent.files import read_json, write_json
from letsbe_agent.journal import CommandJournal
from letsbe_agent.settings import AgentSettings
from letsbe_agent.update import ConfigSync, Updater
from letsbe_agent.usage import UsageLedger
from letsbe_agent.wire import (
    CommandOut,
    DiskUsage,
    HeartbeatDetails,
    HeartbeatRequest,
    MemoryUsage,
    RegisterRequest,
    RotateCredentialParams,
    dump,
    parse,
)
from letsbe_contracts.enums import AgentKind
from letsbe_contracts.protocol import CREDENTIAL_FILE
from letsbe_platform.asgi import Runtime, Slot
from letsbe_platform.logging import get_logger
from letsbe_platform.waiting import FullJitter, jittered

log = get_logger(__name__)

HEARTBEATS = Counter("agent_heartbeats_total", "Heartbeats sent, by outcome", ["outcome"])
COMMANDS = Counter("agent_commands_total", "Commands handled, by type and outcome", ["type", "outcome"])
BUFFERED = Gauge("agent_buffered_reports", "Results and reports waiting on disk for the hub")


class _Seq:
    """Heartbeat sequence numbers, increasing across restarts: blocks of 1000 are reserved on disk."""

    BLOCK = 1000

    def __init__(self, path: Any):
        self.path = path
        self.reserved = int((read_json(path) or {}).get("reserved", 0))
        self.current = self.reserved

    def next(self) -> int:
        self.current += 1
        if self.current > self.reserved:
            self.reserved = self.current + self.BLOCK
            write_json(self.path, {"reserved": self.reserved})
        return self.current


class AgentRuntime:
    def __init__(
        self,
        settings: AgentSettings,
        *,
        kind: AgentKind,
        version: str,
        hub_transport: Any = None,
    ):
        if not settings.hub_url:
            raise ValueError("hub_url is not set")
        # One line per request to the hub and the engine every few seconds would drown what matters.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        self.settings = settings
        self.kind = kind
        self.version = version
        state = settings.state_dir
        assert state is not None
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.credentials = CredentialStore(state / CREDENTIAL_FILE)
        self.journal = CommandJournal(state / "journal")
        self.buffer = DiskBuffer(state / "outbox")
        self.commands = CommandRegistry()
        self.docker = DockerClient(settings.docker_socket, api_version=settings.docker_api_version)
        self.updater = Updater(
            self.docker,
            own_component=kind.value,
            free_disk_bytes=lambda: shutil.disk_usage(settings.disk_path).free,
            backup_running=lambda: backups.running(settings.backup_lock_path),
            poll_seconds=settings.update_poll_seconds,
        )
        self.updater.register(self.commands)
        self.config = ConfigSync(state / "config.json")
        self.config.register(self.commands)
        self.commands.register("rotate-credential", self._rotate_credential, params=RotateCredentialParams)
        # Other credentials this agent holds, by the name rotate-credential gives them (the Secrets Proxy adds
        # "llm-key"): each fetches its new value, keeps it, switches to it and says what it did.
        self.rotators: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {}
        # Only the agent that reports usage reads the ledger (the Secrets Proxy writes it through its own handle).
        self.ledger = (UsageLedger(settings.usage_ledger_path)
                       if settings.report_usage and settings.usage_ledger_path else None)
        self.client = HubClient(settings.hub_url, timeout=settings.hub_timeout_seconds, transport=hub_transport)
        self.interval = settings.heartbeat_interval_seconds
        self.registered = asyncio.Event()
        self.credential: Credential | None = None
        self._seq = _Seq(state / "seq.json")
        self._stopping = asyncio.Event()
        self._running: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._flush_lock = asyncio.Lock()
        self._details_due = True
        self._details_sent_at = 0.0
        self._details_digest: tuple[Any, ...] | None = None
        self._refused_tokens: set[str] = set()
        self._started = time.monotonic()
        self._recovered = False
        self._schedule_path = state / "schedule.json"

    # --- lifecycle ---------------------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        try:
            while not self._stopping.is_set():
                cred = await self._ensure_credential()
                if cred is None:
                    return
                self.credential = cred
                self.client.api_key = cred.api_key
                self.registered.set()
                try:
                    await self._connected()
                except ReEnrolRequired as exc:
                    log.warning("the hub asks this agent to re-enrol", reason=str(exc))
                    self.credentials.delete()
                    self.credential = None
                    self.client.api_key = None
                    self.registered.clear()
        finally:
            for task in list(self._running.values()):
                task.cancel()
            await asyncio.gather(*self._running.values(), return_exceptions=True)
            await self.client.aclose()
            await self.docker.aclose()
            if self.ledger is not None:
                self.ledger.close()

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=max(0.0, seconds))
        except TimeoutError:
            pass

    # --- registration ------------------------------------------------------------------------------------------

    def _registration_token(self) -> str | None:
        s = self.settings
        token = s.registration_token.get_secret_value() if s.registration_token else None
        if token is None and s.registration_token_file is not None:
            try:
                token = s.registration_token_file.read_text().strip() or None
            except FileNotFoundError:
                token = None
        if token is not None and token in self._refused_tokens:
            return None
        return token

    async def _ensure_credential(self) -> Credential | None:
        backoff = FullJitter(self.settings.backoff_base_seconds, self.settings.backoff_max_seconds)
        waiting_logged = False
        while not self._stopping.is_set():
            cred = self.credentials.load()
            if cred is not None:
                return cred
            token = self._registration_token()
            if token is None:
                if not waiting_logged:
                    log.warning("not registered and no (unused) registration token: waiting for one")
                    waiting_logged = True
                await self._sleep(backoff.next_delay())
                continue
            body = RegisterRequest(
                registration_token=token, agent=self.kind, version=self.version, hostname=_hostname()
            )
            try:
                answer = await self.client.register(body)
            except HubUnavailable as exc:
                log.info("hub unreachable; will retry registration", error=str(exc))
                await self._sleep(backoff.next_delay())
                continue
            except (RegistrationRefused, Rejected) as exc:
                log.error("registration token refused; waiting for a new one", error=str(exc))
                self._refused_tokens.add(token)
                continue
            cred = Credential(answer.agent_id, answer.tenant_id, answer.api_key)
            self.credentials.save(cred)
            self.interval = answer.heartbeat_interval_seconds
            self._details_due = True
            if self.settings.registration_token_file is not None:
                self.settings.registration_token_file.unlink(missing_ok=True)  # spent
            log.info("registered with the hub", agent_id=str(cred.agent_id), tenant_id=str(cred.tenant_id))
            return cred
        return None

    async def _rotate_credential(self, ctx: CommandContext) -> Outcome:
        """A new API key from the hub, saved before it is used (the old one stays valid for a grace period)."""
        p: RotateCredentialParams = ctx.params
        if p.credential != "agent":
            rotate = self.rotators.get(p.credential)
            if rotate is None:
                return Outcome.failed(f"this agent ({self.kind.value}) holds no {p.credential!r} credential")
            return Outcome.succeeded(credential=p.credential, **await rotate())
        assert self.credential is not None
        answer = await self.client.rotate()
        self.credential = Credential(self.credential.agent_id, self.credential.tenant_id, answer.api_key)
        self.credentials.save(self.credential)
        self.client.api_key = answer.api_key
        return Outcome.succeeded(previous_valid_until=answer.previous_valid_until.isoformat())

    # --- connected: the loops ----------------------------------------------------------------------------------

    async def _connected(self) -> None:
        if not self._recovered:
            self._recovered = True
            self._spawn("recover", self._recover_interrupted())
        loops = [self._heartbeat_loop()]
        if self.settings.long_poll:
            loops.append(self._long_poll_loop())
        if self.settings.report_backups:
            loops.append(self._backup_loop())
        if self.settings.report_usage and self.ledger is not None:
            loops.append(self._usage_loop())
        tasks = [asyncio.create_task(c) for c in loops]
        stop = asyncio.create_task(self._stopping.wait())
        try:
            done, _ = await asyncio.wait([*tasks, stop], return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not stop and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
        finally:
            for t in [*tasks, stop]:
                t.cancel()
            await asyncio.gather(*tasks, stop, return_exceptions=True)

    async def _heartbeat_loop(self) -> None:
        backoff = FullJitter(self.settings.backoff_base_seconds, self.settings.backoff_max_seconds)
        await self._sleep(jittered(min(self.interval, 1.0), 0.5))  # a fleet that starts together does not beat together
        while not self._stopping.is_set():
            try:
                await self.heartbeat()
                backoff.reset()
                delay = jittered(self.interval, self.settings.heartbeat_jitter)
            except HubUnavailable as exc:
                HEARTBEATS.labels("unreachable").inc()
                self._details_due = True  # the first heartbeat back carries the full picture
                delay = backoff.next_delay()
                log.info("hub unreachable", error=str(exc), retry_in=round(delay, 2))
            await self._sleep(delay)

    async def heartbeat(self) -> None:
        details = await self._details_if_due()
        answer = await self.client.heartbeat(
            HeartbeatRequest(
                seq=self._seq.next(),
                version=self.version,
                uptime_seconds=round(time.monotonic() - self._started, 1),
                details=details[0] if details else None,
            )
        )
        HEARTBEATS.labels("ok").inc()
        if details:
            self._details_digest, self._details_sent_at, self._details_due = details[1], time.monotonic(), False
        if answer.details_wanted:
            self._details_due = True
        self.interval = max(1, answer.interval_seconds)
        for command in answer.commands:
            self.dispatch(command)
        await self.flush()

    async def _long_poll_loop(self) -> None:
        backoff = FullJitter(self.settings.backoff_base_seconds, self.settings.backoff_max_seconds)
        while not self._stopping.is_set():
            try:
                commands = await self.client.pull(self.settings.long_poll_seconds)
                backoff.reset()
            except HubUnavailable:
                await self._sleep(backoff.next_delay())
                continue
            for command in commands:
                self.dispatch(command)

    # --- the heavy part ----------------------------------------------------------------------------------------

    async def collect_details(self) -> HeartbeatDetails:
        disk = shutil.disk_usage(self.settings.disk_path)
        mem = _memory()
        versions = {self.kind.value: self.version}
        try:
            containers = tuple(await self.docker.container_states())
            versions = await self.docker.image_versions() | versions
        except DockerError as exc:
            log.debug("docker unavailable for the heartbeat", error=str(exc))
            containers = ()
        backup = backups.read_status(self.settings.backup_status_path)[0] if self.settings.report_backups else None
        return HeartbeatDetails(
            disk=DiskUsage(
                path=self.settings.disk_path, total_bytes=disk.total, used_bytes=disk.used,
                # Of what users may fill (root's reserved blocks excluded), as df and psutil count it.
                percent=round(100 * disk.used / ((disk.used + disk.free) or 1), 1),
            ),
            memory=mem,
            containers=containers,
            versions=versions,
            backup=backup,
        )

    async def _details_if_due(self) -> tuple[HeartbeatDetails, tuple[Any, ...]] | None:
        details = await self.collect_details()
        # What counts as a change: whole percents of disk, 5 % steps of memory, anything about containers,
        # versions and the last backup; not every byte (that would make every heartbeat heavy).
        digest = (
            round(details.disk.percent),
            round(details.memory.percent / 5),
            tuple(
                (c.name, c.state, c.health, c.restart_count, c.oom_killed, c.image_digest) for c in details.containers
            ),
            tuple(sorted(details.versions.items())),
            details.backup.last_run if details.backup else None,
        )
        stale = time.monotonic() - self._details_sent_at >= self.settings.heartbeat_details_every_seconds
        if self._details_due or stale or digest != self._details_digest:
            return details, digest
        return None

    # --- commands ----------------------------------------------------------------------------------------------

    def _spawn(self, name: str, coro: Any) -> None:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(
            lambda t: (
                t.cancelled()
                or (t.exception() and log.error("agent task failed", task=name, error=repr(t.exception())))
            )
        )

    def dispatch(self, command: CommandOut) -> None:
        if command.id in self._running:  # the same command from the heartbeat and the long-poll at once
            return
        task = asyncio.create_task(self._execute(command), name=f"command-{command.id}")
        self._running[command.id] = task
        task.add_done_callback(lambda _t: self._running.pop(command.id, None))

    async def _execute(self, command: CommandOut) -> None:
        log_ = log.bind(command_id=str(command.id), type=command.type)
        if not self.journal.begin(command.id, dump(command)):
            # A redelivery (the ack's answer was lost, or the hub resent it): acknowledge, never run it again.
            entry = self.journal.get(command.id) or {}
            log_.info("redelivered command acknowledged, not re-run", state=entry.get("state"))
            try:
                await self.client.ack(command.id)
            except (HubUnavailable, ReEnrolRequired, Rejected, RegistrationRefused):
                pass
            if entry.get("state") == "done" and "status" in entry.get("outcome", {}):
                self._queue_result(command.id, entry["outcome"])
                await self._flush_quietly()
            return
        try:
            ack = await self.client.ack(command.id)
        except (HubUnavailable, ReEnrolRequired, RegistrationRefused):
            self.journal.forget(command.id)  # nothing ran: a redelivery may run it
            return
        except Rejected as exc:
            self.journal.done(command.id, {"skipped": f"ack refused ({exc.status})"})
            return
        if not ack.run:
            log_.info("command not run: the hub says it is no longer wanted", status=ack.status)
            self.journal.done(command.id, {"skipped": ack.status})
            return
        self.journal.running(command.id)
        outcome = await self._run_handler(command, {})
        self._finish(command, outcome)
        await self._flush_quietly()

    async def _run_handler(self, command: CommandOut, data: dict[str, Any], *, recovering: bool = False) -> Outcome:
        reg: Registration | None = self.commands.get(command.type)
        if reg is None:
            return Outcome.failed(f"this agent ({self.kind.value}) has no handler for '{command.type}'")
        try:
            params = _validated(reg.params, command.params)
        except ValueError as exc:  # pydantic's and msgspec's ValidationError are ValueErrors
            return Outcome.failed(f"invalid parameters: {str(exc)[:1000]}")
        ctx = CommandContext(command=command, params=params, journal=self.journal, data=dict(data))
        fn = reg.recover if recovering else reg.handler
        if fn is None:
            return Outcome.failed("interrupted by an agent restart; not re-run")
        try:
            return await asyncio.wait_for(fn(ctx), timeout=command.deadline_seconds)
        except TimeoutError:
            return Outcome("TIMED_OUT", {}, f"did not finish within {command.deadline_seconds}s")
        except asyncio.CancelledError:
            raise  # the agent is stopping: the journal says "running", recovery finishes it after the restart
        except Exception as exc:
            log.exception("command handler failed", command_id=str(command.id))
            return Outcome.failed(f"{type(exc).__name__}: {exc}")

    def _finish(self, command: CommandOut, outcome: Outcome) -> None:
        self.journal.done(command.id, outcome.wire())
        self._queue_result(command.id, outcome.wire())
        COMMANDS.labels(command.type, outcome.status).inc()
        log.info(
            "command finished",
            command_id=str(command.id),
            type=command.type,
            status=outcome.status,
            error=outcome.error,
        )

    async def _recover_interrupted(self) -> None:
        for command_id, entry in self.journal.interrupted():
            command = parse(CommandOut, entry["command"])
            log.warning("finishing a command interrupted by a restart", command_id=str(command_id), type=command.type)
            outcome = await self._run_handler(command, entry.get("data", {}), recovering=True)
            self._finish(command, outcome)
        self.journal.prune()
        await self._flush_quietly()

    def _queue_result(self, command_id: uuid.UUID, outcome: dict[str, Any]) -> None:
        self.buffer.put("result", str(command_id), f"/api/v1/tenant/commands/{command_id}/result", outcome)
        BUFFERED.set(len(self.buffer))

    # --- the disk buffer ---------------------------------------------------------------------------------------

    async def flush(self) -> None:
        async with self._flush_lock:
            await self.buffer.flush(self.client)
            BUFFERED.set(len(self.buffer))

    async def _flush_quietly(self) -> None:
        try:
            await self.flush()
        except (HubUnavailable, ReEnrolRequired):
            pass  # the heartbeat loop notices and handles both

    # --- backups and usage -------------------------------------------------------------------------------------

    async def _backup_loop(self) -> None:
        s = self.settings
        while not self._stopping.is_set():
            now = datetime.now(UTC)
            today = backups.due_date(now, s.backup_check_at, s.backup_check_timezone)
            done = (read_json(self._schedule_path) or {}).get("backup_report_date")
            if today is not None and done != today.isoformat():
                report = backups.build_report(s.backup_status_path, today, now)
                self.buffer.put(
                    "backup", today.isoformat(), "/api/v1/tenant/backup-reports", dump(report)
                )
                write_json(self._schedule_path, {"backup_report_date": today.isoformat()})
                log.info("backup status read", report_date=today.isoformat(), problem=report.problem)
                await self._flush_quietly()
            wait = (backups.next_check(now, s.backup_check_at, s.backup_check_timezone) - now).total_seconds()
            await self._sleep(min(wait + 1, 3600))

    async def _usage_loop(self) -> None:
        assert self.ledger is not None
        backoff = FullJitter(self.settings.backoff_base_seconds, self.settings.backoff_max_seconds)
        while not self._stopping.is_set():
            try:
                await self.report_usage()
                backoff.reset()
                now = datetime.now(UTC)
                to_next_hour = 3600 - (now.minute * 60 + now.second) + 5
                delay = min(self.settings.usage_report_every_seconds, to_next_hour)
            except HubUnavailable:
                delay = backoff.next_delay()
            await self._sleep(delay)

    async def report_usage(self) -> int:
        assert self.ledger is not None
        sent = 0
        for report in await asyncio.to_thread(self.ledger.pending):
            try:
                await self.client.request("POST", "/api/v1/tenant/usage", json=report.wire())
            except Rejected as exc:  # cannot succeed by retrying: keep the queue moving, say so loudly
                log.error(
                    "hub rejected a usage report",
                    hour=report.hour.isoformat(),
                    status=exc.status,
                    body=str(exc.body)[:300],
                )
            self.ledger.mark_sent(report.hour, report.sequence)
            sent += 1
        return sent


def _memory() -> MemoryUsage:
    """The host's memory from /proc/meminfo (what psutil reads, without its import cost in a 64 MB agent)."""
    fields = {}
    with open("/proc/meminfo") as fh:
        for line in fh:
            name, _, rest = line.partition(":")
            fields[name] = int(rest.split()[0]) * 1024
    total, available = fields["MemTotal"], fields["MemAvailable"]
    return MemoryUsage(total_bytes=total, available_bytes=available,
                       percent=round(100 * (total - available) / (total or 1), 1))


def _validated(kind: type | None, params: dict[str, Any]) -> Any:
    """A command's params as its handler declared them: a letsbe_agent.wire struct, a pydantic model (the Safety
    Wrapper's own commands) or, with none, the dict."""
    if kind is None:
        return params
    validate = getattr(kind, "model_validate", None)
    return validate(params) if validate is not None else parse(kind, params)


def _hostname() -> str:
    name = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:253].strip(".-")
    return name or "tenant"


AGENT: Slot[AgentRuntime] = Slot("agent")


def start_agent(rt: Runtime, settings: AgentSettings, kind: AgentKind, version: str) -> AgentRuntime | None:
    """Start the agent as one of the service's workers; None (and nothing runs) when no hub is configured."""
    if not settings.hub_url:
        log.warning("LETSBE hub_url is not set: this agent does not register, heartbeat or take commands")
        return None
    agent = AgentRuntime(settings, kind=kind, version=version)
    rt.attach(AGENT, agent)
    rt.start("agent", agent.run(), agent.stop)
    return agent


def agent_of(rt: Runtime) -> AgentRuntime | None:
    return rt.part(AGENT)
