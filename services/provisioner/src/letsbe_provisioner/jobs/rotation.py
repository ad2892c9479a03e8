"""Rotating a tenant's AI-stack keys: the provisioner's part of the hub's ``rotate-credential`` command for the tools
token, the sentinel key and the secrets key (``TenantKeyRotationRequestedV1`` in, ``…ReportedV1`` out).

Why here: the provisioner generated these keys, keeps them (``tenant_secrets``) and renders them into the env files
of exactly the containers that use them (step 10); no agent holds every copy. A rotation is the AI-stack part of
step 10 again, for one key: the new value is stored encrypted first, in the transaction that creates the rotation
row (keyed by the hub's command id), then the affected env files are rendered from the stored secrets and exactly
those containers are recreated over SSH. A redelivered request resumes an unfinished rotation with the same value,
or only reports a finished one again; an operator's repeat is a new command, hence a new value.

The secrets key also encrypts the tenant's secret store, which must never be left unreadable. The old key stays in
``tenant_secrets`` as ``ai.secrets_key_previous`` until the store is confirmed under the new one:

1. the Safety Wrapper (the store's only writer) is recreated with the new key and the previous one; loading the
   store it re-encrypts it under the new key by an atomic replace (``SecretStore``), so a crash leaves a store one
   of the two keys opens, and the next load finishes;
2. the provisioner waits until the store's Fernet MAC verifies under the new key (it reads the ciphertext over
   SSH and checks the MAC only, ``letsbe_agent.secret_store.opens_with``; nothing is decrypted here);
3. the previous key is dropped, and both agents are recreated with the new key alone.

An unfinished secrets-key rotation (a failure between 1 and 3) is finished by the next one, which keeps its keys.
Secret values are never logged, reported or returned; script output is redacted like a step's.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import uuid
from datetime import UTC, datetime, timedelta

import asyncssh
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_agent import secret_store
from letsbe_contracts import DnsReadyV1, ServerTarget
from letsbe_contracts.events import TenantKeyRotationReportedV1, TenantKeyRotationRequestedV1
from letsbe_platform import state
from letsbe_platform.bus import Delivery
from letsbe_platform.db import unit_of_work
from letsbe_platform.logging import get_logger
from letsbe_platform.outbox import add_event
from letsbe_provisioner.db import outbox
from letsbe_provisioner.jobs import ssh
from letsbe_provisioner.jobs.hub import HubError
from letsbe_provisioner.jobs.models import ROTATION, Job, JobStatus, KeyRotation, RotationStatus
from letsbe_provisioner.jobs.redact import Redactor
from letsbe_provisioner.jobs.secrets import drop_secret, load_secrets, store_secrets
from letsbe_provisioner.jobs.service import (
    EX_TEMPFAIL,
    TAIL_LINES,
    TRANSIENT_OUTPUT,
    Claim,
    Pipeline,
    build_plan,
    run_claimed,
)
from letsbe_provisioner.rendering.plan import (
    PREVIOUS_SECRETS_KEY,
    ROTATED_KEYS,
    SECRET_STORE,
    Plan,
    Settings,
    generate_secret,
)

log = get_logger(__name__)

NS = uuid.UUID("2c0b6f7e-5d0a-4f57-9a0e-3f3b1f1d6c21")
# Prints the secret store's ciphertext (folded: output lines are capped) or says there is none.
NO_STORE = "no secret store"
READ_STORE = 'f="$ROOT{path}"; if [ -f "$f" ]; then fold -w 1000 "$f"; echo; else echo "' + NO_STORE + '"; fi\n'


def _now() -> datetime:
    return datetime.now(UTC)


class RotationFailed(Exception):
    def __init__(self, message: str, *, transient: bool):
        super().__init__(message)
        self.transient = transient


class Rotator:
    """Runs key-rotation requests; shares the pipeline's settings, database, hub client, secret box and SSH key."""

    def __init__(self, pipeline: Pipeline):
        self.p = pipeline
        self.settings = pipeline.settings
        self.running: dict[uuid.UUID, asyncio.Task[None]] = {}

    async def on_requested(self, event: TenantKeyRotationRequestedV1, delivery: Delivery | None = None) -> None:
        async def claim() -> tuple[Claim, uuid.UUID]:
            return await self._claim(event), event.command_id

        busy = min(self.settings.lease_seconds / 2, 2.0)  # another rotation of this tenant runs: one at a time
        keepalive = self.p._keep_in_progress(delivery)
        await run_claimed(claim, lambda _: self._run(event), self.running, keepalive, busy, name="rotation")

    # --- claim: the new value and the row, in one transaction -------------------------------------------------------

    async def _claim(self, event: TenantKeyRotationRequestedV1) -> Claim:
        async with unit_of_work(self.p.sessions) as session:
            # The tenant's job row, locked: claims of one tenant's rotations happen one after the other.
            job = (
                await session.execute(select(Job).where(Job.tenant_id == event.tenant_id).with_for_update())
            ).scalar_one_or_none()
            row = await session.get(KeyRotation, event.command_id, with_for_update=True)
            lease = _now() + timedelta(seconds=self.settings.lease_seconds)
            if row is not None:
                if row.status != RotationStatus.RUNNING:
                    await self._report(session, row)  # a redelivery: report it again (same event id), nothing else
                    return "done"
                if event.command_id in self.running:
                    return "mine"
                if row.lease_until is not None and row.lease_until >= _now():
                    return "busy"
                log.warning("taking over key rotation", command_id=str(row.command_id), previous=row.lease_owner)
                row.lease_owner, row.lease_until, row.attempt = self.p.owner, lease, row.attempt + 1
                return "mine"
            refusal = None
            if event.expires_at <= _now():
                refusal = "the command expired before the provisioner could start it"
            elif job is None:
                refusal = "the provisioner has no job for this tenant"
            elif job.status != JobStatus.SUCCEEDED:
                refusal = f"the tenant is not provisioned yet (its job is {job.status}); rotate once it is"
            if refusal is None and await self._other_running(session, event):
                return "busy"
            row = KeyRotation(
                command_id=event.command_id,
                tenant_id=event.tenant_id,
                key=event.key,
                requested_by=event.requested_by,
                status=RotationStatus.FAILED if refusal else RotationStatus.RUNNING,  # refused: born finished
                attempt=1,
                lease_owner=self.p.owner,
                lease_until=None if refusal else lease,
                error=refusal,
                finished_at=_now() if refusal else None,
            )
            session.add(row)
            if refusal is not None:
                await session.flush()
                await self._report(session, row)
                log.warning("key rotation refused", tenant_id=str(event.tenant_id), key=event.key, reason=refusal)
                return "done"
            await self._new_value(session, event)
            await session.flush()
            await self._report(session, row)
            log.info(
                "key rotation started",
                tenant_id=str(event.tenant_id),
                command_id=str(event.command_id),
                key=event.key,
                requested_by=event.requested_by,
            )
            return "mine"

    async def _other_running(self, session: AsyncSession, event: TenantKeyRotationRequestedV1) -> bool:
        others = await session.execute(
            select(KeyRotation.command_id).where(
                KeyRotation.tenant_id == event.tenant_id,
                KeyRotation.command_id != event.command_id,
                KeyRotation.status == RotationStatus.RUNNING,
                KeyRotation.lease_until >= _now(),
            )
        )
        return others.first() is not None

    async def _new_value(self, session: AsyncSession, event: TenantKeyRotationRequestedV1) -> None:
        """Store the new value (before any server sees it). The secrets key keeps the old one as the previous key,
        unless an unfinished rotation already did: then the store may be under either, and this one finishes it."""
        name = ROTATED_KEYS[event.key][0]
        current = await load_secrets(session, self.p.box, event.tenant_id)
        values = {name: generate_secret("fernet" if event.key == "secrets-key" else "token")}
        if event.key == "secrets-key":
            if PREVIOUS_SECRETS_KEY in current:
                return
            values[PREVIOUS_SECRETS_KEY] = current[name]
        await store_secrets(session, self.p.box, event.tenant_id, values)

    async def _report(self, session: AsyncSession, row: KeyRotation) -> None:
        await add_event(
            session,
            outbox,
            TenantKeyRotationReportedV1(
                command_id=row.command_id,
                tenant_id=row.tenant_id,
                key=row.key,  # type: ignore[arg-type]
                status=row.status,  # type: ignore[arg-type]
                recreated=ROTATED_KEYS[row.key][1] if row.status == RotationStatus.SUCCEEDED else (),
                error=row.error[:4000] if row.error else None,
            ),
            correlation_id=str(row.tenant_id),
            event_id=uuid.uuid5(NS, f"{row.command_id}:{row.status}"),
        )

    # --- the work on the server ---------------------------------------------------------------------------------

    async def _run(self, event: TenantKeyRotationRequestedV1) -> None:
        renew = asyncio.create_task(self._renew_lease(event.command_id))
        work = RotationRun(self, event)
        try:
            error = await work.execute()
        finally:
            renew.cancel()
            await work.close()
        async with unit_of_work(self.p.sessions) as session:
            row = await session.get(KeyRotation, event.command_id, with_for_update=True)
            assert row is not None
            if row.status != RotationStatus.RUNNING:
                return
            to = RotationStatus.FAILED if error else RotationStatus.SUCCEEDED
            done = {"error": error, "finished_at": _now(), "lease_until": None, "output_tail": "\n".join(work.tail)}
            row = await state.move(session, ROTATION, row, to, actor=self.p.owner, **done)
            await self._report(session, row)
        if error:
            log.error("key rotation failed", tenant_id=str(event.tenant_id), key=event.key, error=error)
        else:
            log.info("key rotated", tenant_id=str(event.tenant_id), key=event.key, recreated=ROTATED_KEYS[event.key][1])

    async def _renew_lease(self, command_id: uuid.UUID) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_seconds / 3)
            with contextlib.suppress(Exception):  # a missed renewal only allows a takeover
                async with unit_of_work(self.p.sessions) as session:
                    await session.execute(
                        update(KeyRotation)
                        .where(KeyRotation.command_id == command_id, KeyRotation.lease_owner == self.p.owner)
                        .values(lease_until=_now() + timedelta(seconds=self.settings.lease_seconds))
                    )


class RotationRun:
    """One attempt at a rotation on the tenant's server: its SSH connection, redactor and output tail."""

    def __init__(self, rotator: Rotator, event: TenantKeyRotationRequestedV1):
        self.r = rotator
        self.p = rotator.p
        self.settings = rotator.settings
        self.event = event
        self.conn: asyncssh.SSHClientConnection | None = None
        self.redact = Redactor(self.p.static_secrets)
        self.tail: list[str] = []

    async def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.conn.wait_closed(), 5)
            self.conn = None

    async def execute(self) -> str | None:
        """None once done; else why it failed (redacted). Transient faults are retried with the steps' backoff."""
        attempts, backoff = self.settings.step_attempts, self.settings.retry_backoff_seconds or (1.0,)
        for i in range(attempts):
            try:
                await self._rotate()
                return None
            except RotationFailed as exc:
                error, transient = str(exc), exc.transient
            except (ssh.ConnectionFailed, TimeoutError) as exc:
                error, transient = str(exc) or "timed out", True
                await self.close()
            except ssh.HostKeyMismatch as exc:
                error, transient = str(exc), False
            except HubError as exc:
                error, transient = str(exc), exc.transient
            except Exception as exc:  # a bug or bad state: reported (redacted), not retried into a dead letter
                error, transient = f"{type(exc).__name__}: {exc}", False
            error = self.redact(error)
            if not transient or i == attempts - 1:
                return error
            log.warning("key rotation attempt failed; retrying", command_id=str(self.event.command_id), error=error)
            await asyncio.sleep(backoff[min(i, len(backoff) - 1)])
        return "no attempt left"  # pragma: no cover

    async def _state(self) -> tuple[Plan, dict[str, str], ServerTarget]:
        async with unit_of_work(self.p.sessions) as session:
            job = (await session.execute(select(Job).where(Job.tenant_id == self.event.tenant_id))).scalar_one()
            secrets = await load_secrets(session, self.p.box, self.event.tenant_id)
        self.redact.add(*secrets.values())
        spec = DnsReadyV1.model_validate(job.spec)
        return build_plan(self.settings, self.p.client_key, spec.order, spec.server, secrets), secrets, spec.server

    async def _rotate(self) -> None:
        key = self.event.key
        plan, secrets, server = await self._state()
        containers = ROTATED_KEYS[key][1]
        if key == "secrets-key" and PREVIOUS_SECRETS_KEY in secrets:
            # 1: the Safety Wrapper alone, with both keys: it moves the store to the new key as it loads it.
            await self._script(server, plan.settings, plan.rotation_script(key, ("safety-wrapper",)))
            await self._until_store_under(server, plan.settings, secrets["ai.secrets_key"])
            async with unit_of_work(self.p.sessions) as session:
                await drop_secret(session, self.event.tenant_id, PREVIOUS_SECRETS_KEY)
            plan, secrets, server = await self._state()
        llm_key = None
        if "secrets-proxy" in containers:  # its env file carries the relay key, which only the hub issues
            llm_key = (await self.p.hub.llm_key(self.event.tenant_id)).key
            self.redact.add(llm_key)
        await self._script(server, plan.settings, plan.rotation_script(key, containers, llm_key))

    async def _connect(self, server: ServerTarget, plan_settings: Settings) -> tuple[asyncssh.SSHClientConnection, str]:
        target = ssh.step_target(server, 10, plan_settings.ssh_user)
        if self.conn is None:
            self.conn = await ssh.connect(target, self.p.client_key, timeout=self.settings.ssh_connect_timeout_seconds)
        return self.conn, target.ssh_user

    async def _script(
        self, server: ServerTarget, plan_settings: Settings, script: str, on_line: ssh.LineSink | None = None
    ) -> None:
        conn, user = await self._connect(server, plan_settings)
        lines: list[str] = []

        async def keep(stream: str, line: str) -> None:
            line = self.redact(line)
            lines.append(line)
            self.tail = [*self.tail, line][-TAIL_LINES:]

        exit_code = await ssh.run_script(
            conn,
            script,
            root=plan_settings.root,
            user=user,
            on_line=on_line or keep,
            timeout=self.settings.step_timeout_seconds,
        )
        if exit_code != 0:
            transient = exit_code == EX_TEMPFAIL or any(TRANSIENT_OUTPUT.search(line) for line in lines)
            reason = "\n".join(lines[-20:])[-3000:] or "no output"
            raise RotationFailed(f"exit code {exit_code}: {reason}", transient=transient)

    async def _until_store_under(self, server: ServerTarget, plan_settings: Settings, key: str) -> None:
        """Wait until the store's MAC verifies under ``key`` (or there is no store). Only the MAC: no decryption."""
        deadline = asyncio.get_running_loop().time() + self.settings.rekey_timeout_seconds
        script = f"set -euo pipefail\nROOT={shlex.quote(plan_settings.root)}\n" + READ_STORE.format(path=SECRET_STORE)
        while True:
            out: list[str] = []

            async def collect(stream: str, line: str, out: list[str] = out) -> None:
                if stream == "stdout":
                    out.append(line)

            await self._script(server, plan_settings, script, on_line=collect)
            token = "".join(out).strip()
            if token == NO_STORE:
                return
            if secret_store.opens_with(token, key):
                return
            if asyncio.get_running_loop().time() >= deadline:
                raise RotationFailed(
                    f"the Safety Wrapper did not re-encrypt the secret store under the new key within "
                    f"{self.settings.rekey_timeout_seconds:g}s (the previous key is kept: a retry finishes it)",
                    transient=False,
                )
            await asyncio.sleep(self.settings.registration_poll_seconds)
