"""A fake OpenAI-compatible LLM API (Chat Completions and Responses, streaming and not), for the Secrets Proxy.

Wire format as documented by OpenAI: bearer auth with ``{"error": {...}}`` bodies on failure; chat chunks as
``data: {...}`` server-sent events ending in ``data: [DONE]``, with a final usage chunk when
``stream_options.include_usage`` is set; Responses events as ``event: <type>`` + ``data: {...}`` with
``sequence_number``s, ending in ``response.completed`` (which carries usage).

Tests script the answer: ``fake.reply = "text"`` or ``fake.chunks = ["sec", "ret"]`` (the exact pieces to stream),
``fake.tool_call = ("name", '{"json": "args"}')``; every request is kept in ``fake.requests``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


class FakeOpenAI:
    def __init__(self, api_key: str = "sk-fake-upstream-0123456789abcdefghijklmnopqrstuv", model: str = "gpt-4o-mini"):
        self.api_key = api_key
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self.reply = "Hello from the fake model."
        self.chunks: list[str] | None = None  # streamed pieces; default: the reply split in words
        self.tool_call: tuple[str, str] | None = None  # (function name, arguments JSON text)
        self.tool_call_chunks: list[str] | None = None  # streamed pieces of the arguments
        self.usage = (11, 7)  # (input tokens, output tokens)
        self.chunk_delay = 0.0
        self.record_bodies = True  # the benchmark turns this off
        self.app = Starlette(routes=[
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/v1/responses", self._responses, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
        ])

    # --- helpers -------------------------------------------------------------------------------------------

    async def _authorized(self, request: Request) -> tuple[dict[str, Any] | None, Response | None]:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return None, JSONResponse({"error": {"message": "Incorrect API key provided.", "type":
                                                 "invalid_request_error", "param": None, "code": "invalid_api_key"}},
                                      status_code=401)
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            return None, JSONResponse({"error": {"message": "We could not parse the JSON body of your request.",
                                                 "type": "invalid_request_error", "param": None, "code": None}},
                                      status_code=400)
        self.requests.append({"path": request.url.path, "headers": dict(request.headers),
                              "body": body if self.record_bodies else None, "raw": raw if self.record_bodies else b""})
        return body, None

    def _pieces(self) -> list[str]:
        if self.chunks is not None:
            return list(self.chunks)
        words = self.reply.split(" ")
        return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]

    async def _sse(self, events: list[tuple[str | None, Any]]) -> AsyncIterator[bytes]:
        for name, data in events:
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            head = f"event: {name}\n" if name else ""
            payload = data if isinstance(data, str) else json.dumps(data)
            yield f"{head}data: {payload}\n\n".encode()

    async def _models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "fake"}]})

    # --- chat completions ----------------------------------------------------------------------------------

    async def _chat(self, request: Request) -> Response:
        body, error = await self._authorized(request)
        if error is not None:
            return error
        assert body is not None
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        model = body.get("model") or self.model
        usage = {"prompt_tokens": self.usage[0], "completion_tokens": self.usage[1],
                 "total_tokens": sum(self.usage)}
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": self.reply, "refusal": None}
            if self.tool_call:
                message["content"] = None
                message["tool_calls"] = [{"id": "call_1", "type": "function",
                                          "function": {"name": self.tool_call[0], "arguments": self.tool_call[1]}}]
            return JSONResponse({
                "id": cid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": "tool_calls" if self.tool_call else "stop"}],
                "usage": usage,
            })

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

        events: list[tuple[str | None, Any]] = [(None, chunk({"role": "assistant", "content": ""}))]
        if self.tool_call:
            name, args = self.tool_call
            events.append((None, chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                        "function": {"name": name, "arguments": ""}}]})))
            for piece in self.tool_call_chunks or [args]:
                events.append((None, chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})))
            events.append((None, chunk({}, "tool_calls")))
        else:
            events.extend((None, chunk({"content": p})) for p in self._pieces())
            events.append((None, chunk({}, "stop")))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append((None, {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                                  "choices": [], "usage": usage}))
        events.append((None, "[DONE]"))
        return StreamingResponse(self._sse(events), media_type="text/event-stream")

    # --- responses -----------------------------------------------------------------------------------------

    async def _responses(self, request: Request) -> Response:
        body, error = await self._authorized(request)
        if error is not None:
            return error
        assert body is not None
        rid, mid, created = f"resp_{uuid.uuid4().hex[:24]}", f"msg_{uuid.uuid4().hex[:24]}", int(time.time())
        model = body.get("model") or self.model
        usage = {"input_tokens": self.usage[0], "output_tokens": self.usage[1], "total_tokens": sum(self.usage)}
        text = "".join(self._pieces())
        item = {"type": "message", "id": mid, "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}]}
        response = {"id": rid, "object": "response", "created_at": created, "status": "completed", "model": model,
                    "output": [item], "usage": usage}
        if not body.get("stream"):
            return JSONResponse(response)
        seq = iter(range(1_000_000))
        in_progress = {**response, "status": "in_progress", "output": [], "usage": None}
        events: list[tuple[str | None, Any]] = [
            ("response.created", {"type": "response.created", "sequence_number": next(seq), "response": in_progress}),
            ("response.output_item.added", {"type": "response.output_item.added", "sequence_number": next(seq),
                                            "output_index": 0, "item": {**item, "status": "in_progress",
                                                                        "content": []}}),
            ("response.content_part.added", {"type": "response.content_part.added", "sequence_number": next(seq),
                                             "item_id": mid, "output_index": 0, "content_index": 0,
                                             "part": {"type": "output_text", "text": "", "annotations": []}}),
        ]
        for piece in self._pieces():
            events.append(("response.output_text.delta", {
                "type": "response.output_text.delta", "sequence_number": next(seq), "item_id": mid,
                "output_index": 0, "content_index": 0, "delta": piece}))
        events += [
            ("response.output_text.done", {"type": "response.output_text.done", "sequence_number": next(seq),
                                           "item_id": mid, "output_index": 0, "content_index": 0, "text": text}),
            ("response.content_part.done", {"type": "response.content_part.done", "sequence_number": next(seq),
                                            "item_id": mid, "output_index": 0, "content_index": 0,
                                            "part": item["content"][0]}),
            ("response.output_item.done", {"type": "response.output_item.done", "sequence_number": next(seq),
                                           "output_index": 0, "item": item}),
            ("response.completed", {"type": "response.completed", "sequence_number": next(seq),
                                    "response": response}),
        ]
        return StreamingResponse(self._sse(events), media_type="text/event-stream")
