"""The baseline for the heartbeat benchmark: a bare FastAPI + asyncpg endpoint doing the same liveness upsert as the
hub's heartbeat (credential check + last_heartbeat_at/last_seq), one statement per request, nothing else.

    python bench/heartbeat_baseline.py --port 3900     # DATABASE_URL as for the hub
"""

from __future__ import annotations

import argparse
import hashlib
import os
from contextlib import asynccontextmanager

import asyncpg
import uvicorn
from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel

from letsbe_platform.db import plain_url

SQL = """
UPDATE hub.agents a SET last_heartbeat_at = now(), last_seq = GREATEST(a.last_seq, $2)
FROM hub.agent_credentials c
WHERE c.key_hash = $1 AND c.revoked_at IS NULL AND a.id = c.agent_id AND a.revoked_at IS NULL
RETURNING a.id
"""


class Beat(BaseModel):
    seq: int
    version: str


def create_app() -> FastAPI:
    state: dict[str, asyncpg.Pool] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state["pool"] = await asyncpg.create_pool(plain_url(os.environ["DATABASE_URL"]), min_size=4, max_size=10)
        yield
        await state["pool"].close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/api/v1/tenant/heartbeat")
    async def heartbeat(body: Beat, authorization: str = Header()) -> dict[str, int]:
        key = authorization.removeprefix("Bearer ")
        row = await state["pool"].fetchval(SQL, hashlib.sha256(key.encode()).hexdigest(), body.seq)
        if row is None:
            raise HTTPException(401)
        return {"interval_seconds": 60}

    return app


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=3900)
    a = p.parse_args()
    uvicorn.run(create_app(), host="127.0.0.1", port=a.port, log_level="warning", access_log=False)
