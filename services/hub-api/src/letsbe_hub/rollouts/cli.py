"""``letsbe-hub rollout …``: the rollout admin actions from a shell (straight to the database, like create-token)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_hub.cli_session import run_in_session
from letsbe_hub.rollouts import repository as repo
from letsbe_hub.rollouts import service
from letsbe_hub.rollouts.schemas import DEFAULT_STAGES, RolloutAbort, RolloutCreate

app = typer.Typer(help="Fleet rollouts: create, watch, pause, resume, approve, abort", no_args_is_help=True)
ACTOR = "cli"


def _run(fn: Callable[[AsyncSession], Awaitable[Any]]) -> None:
    out = run_in_session(lambda session, _settings: fn(session))
    items = out if isinstance(out, list) else [out]
    typer.echo(json.dumps([i.model_dump(mode="json") if isinstance(i, BaseModel) else i for i in items], indent=2))


@app.command("create")
def create(
    component: Annotated[str, typer.Option()],
    image: Annotated[str, typer.Option(help="repository, e.g. registry.letsbe.biz/letsbe/openclaw")],
    digest: Annotated[str, typer.Option(help="sha256:…")],
    version: Annotated[str, typer.Option()],
    concurrency: Annotated[int, typer.Option()] = 10,
    soak_scale: Annotated[float, typer.Option(help="multiply the default soak times (0.001 for a drill)")] = 1.0,
    rollback_on_abort: Annotated[bool, typer.Option()] = False,
) -> None:
    stages = [s.model_copy(update={"soak_seconds": int(s.soak_seconds * soak_scale)}) for s in DEFAULT_STAGES]
    body = RolloutCreate(
        component=component,
        image=image,
        digest=digest,
        version=version,
        stages=stages,
        concurrency=concurrency,
        rollback_on_abort=rollback_on_abort,
    )
    _run(lambda s: service.create(s, body, actor=ACTOR))


@app.command("list")
def list_() -> None:
    async def go(s: AsyncSession) -> list:
        return [await service.view(s, r.id) for r in await repo.list_rollouts(s, limit=50, offset=0)]

    _run(go)


@app.command("show")
def show(rollout_id: uuid.UUID, targets: bool = False) -> None:
    _run(lambda s: service.target_views(s, rollout_id) if targets else service.view(s, rollout_id))


@app.command("pause")
def pause(rollout_id: uuid.UUID) -> None:
    _run(lambda s: service.pause(s, rollout_id, actor=ACTOR))


@app.command("resume")
def resume(rollout_id: uuid.UUID) -> None:
    _run(lambda s: service.resume(s, rollout_id, actor=ACTOR))


@app.command("approve")
def approve(rollout_id: uuid.UUID) -> None:
    _run(lambda s: service.approve(s, rollout_id, actor=ACTOR))


@app.command("abort")
def abort(rollout_id: uuid.UUID, reason: str = "aborted by an operator", rollback: bool | None = None) -> None:
    _run(lambda s: service.abort(s, rollout_id, RolloutAbort(reason=reason, rollback=rollback), actor=ACTOR))
