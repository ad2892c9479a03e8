"""A stand-in for OpenClaw's gateway on a sandbox VPS: its chat API (``POST /v1/chat/completions``, OpenAI's wire
format, the gateway token as bearer) answering deterministically, so a customer's chat through the hub's relay gets
an answer without a model. The real gateway's behaviour on the rendered configuration is checked against the real
OpenClaw release (services/provisioner/tests/rendering/test_openclaw.py).

    python -m letsbe_sandbox.openclaw    # OPENCLAW_GATEWAY_TOKEN from openclaw.env; host and port from the sandbox
"""

from __future__ import annotations

import os
import time
import uuid

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

HOST_VAR, PORT_VAR = "LETSBE_SANDBOX_OPENCLAW_HOST", "LETSBE_SANDBOX_OPENCLAW_PORT"


def answer(text: str) -> str:
    """What the stand-in says to ``text``: the same every time."""
    return f"(sandbox assistant) You said: {text}"


def create_app(token: str) -> Starlette:
    async def chat(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {token}":
            return JSONResponse({"error": {"message": "Unauthorized", "type": "unauthorized"}}, status_code=401)
        try:
            body = await request.json()
            text = str([m for m in body["messages"] if m.get("role") == "user"][-1]["content"])
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return JSONResponse({"error": {"message": "invalid request", "type": "invalid_request_error"}},
                                status_code=400)
        return JSONResponse({
            "id": f"chatcmpl_{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": str(body.get("model", "openclaw")),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer(text)},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        })

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def main() -> None:
    import uvicorn

    uvicorn.run(create_app(os.environ["OPENCLAW_GATEWAY_TOKEN"]), host=os.environ[HOST_VAR],
                port=int(os.environ[PORT_VAR]), log_level="warning", ws="none")


if __name__ == "__main__":
    main()
