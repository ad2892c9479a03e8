"""The loopback server the fakes run on: stopping it lets a response in flight finish, and stops at once."""

import asyncio
import threading

import httpx
from fastapi import FastAPI

from letsbe_fakes import LoopbackServer


async def test_stop_lets_the_response_in_flight_finish_then_closes_the_port():
    app, in_flight, release = FastAPI(), threading.Event(), threading.Event()

    @app.get("/slow")
    async def slow() -> dict[str, bool]:
        in_flight.set()
        while not release.is_set():  # released by the test once stop() has begun
            await asyncio.sleep(0.01)
        return {"done": True}

    srv = LoopbackServer(app).start()
    async with httpx.AsyncClient() as client:
        request = asyncio.create_task(client.get(srv.url + "/slow", timeout=10))
        assert await asyncio.to_thread(in_flight.wait, 10)
        stopping = asyncio.create_task(asyncio.to_thread(srv.stop))
        async with asyncio.timeout(10):  # stop() is under way
            while not srv._server.should_exit:
                await asyncio.sleep(0.01)
        assert not request.done()
        release.set()
        assert (await request).json() == {"done": True}
        await asyncio.wait_for(stopping, 10)
        try:
            await client.get(srv.url + "/slow", timeout=2)
        except httpx.TransportError:
            pass
        else:
            raise AssertionError("the stopped server still answers")
