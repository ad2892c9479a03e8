"""Server-sent events from the upstream, rewritten on the fly: each event is forwarded as soon as it is complete,
with its text deltas passed through a per-field StreamRedactor (so a secret split over two events is caught) and
usage read from it (including the final usage chunk).

Chat Completions: ``choices[i].delta.content`` / ``refusal`` / ``reasoning_content`` and
``delta.tool_calls[j].function.arguments``; what a field still holds back is flushed into the event that carries
``finish_reason``, or into one extra chunk before ``[DONE]``.
Responses: ``response.*.delta`` events per (item, part); held text is flushed as one extra delta event just
before the matching ``.done`` event (later ``sequence_number``s shift by one so they stay unique and ordered);
every other event (``.done``, ``response.completed`` …) is redacted whole.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from letsbe_secrets_proxy.proxy.redact import Finding, Redactor, StreamRedactor
from letsbe_secrets_proxy.proxy.walk import redact_json

UsageSink = Callable[[str, Any, Any], None]

_CHAT_TEXT_FIELDS = ("content", "refusal", "reasoning_content")
_RESPONSES_DELTAS = {
    "response.output_text.delta": "response.output_text.done",
    "response.refusal.delta": "response.refusal.done",
    "response.function_call_arguments.delta": "response.function_call_arguments.done",
    "response.reasoning_text.delta": "response.reasoning_text.done",
    "response.reasoning_summary_text.delta": "response.reasoning_summary_text.done",
}
_RESPONSES_DONE = {done: delta for delta, done in _RESPONSES_DELTAS.items()}


class SSERewriter:
    """Feed raw upstream bytes; get bytes to send downstream. ``close()`` returns what is left at the end."""

    def __init__(self, redactor: Redactor, api: str, on_usage: UsageSink):
        self.r = redactor
        self.api = api  # "chat" or "responses"
        self.on_usage = on_usage
        self.findings: list[Finding] = []
        self._buf = b""
        self._fields: dict[Any, StreamRedactor] = {}
        self._last_chunk: dict[str, Any] | None = None
        self._last_delta_event: dict[Any, dict[str, Any]] = {}
        self._seq_shift = 0
        self._done = False

    # --- framing -------------------------------------------------------------------------------------------

    def feed(self, data: bytes) -> bytes:
        self._buf += data
        out: list[bytes] = []
        while True:
            idx, sep = _event_end(self._buf)
            if idx < 0:
                break
            raw, self._buf = self._buf[:idx], self._buf[idx + sep:]
            out.append(self._event(raw))
        return b"".join(out)

    def buffered(self) -> int:
        """Characters held back: an unfinished event, and text each field holds until it can be checked."""
        return len(self._buf) + sum(len(f.pending) for f in self._fields.values())

    def close(self) -> bytes:
        out = self._event(self._buf) if self._buf.strip() else b""
        self._buf = b""
        if not self._done:
            out += self._flush_all()
        return out

    def _event(self, raw: bytes) -> bytes:
        text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n")
        name, data_lines, other = None, [], []
        for line in text.split("\n"):
            if line.startswith("data:"):
                data_lines.append(line[5:].removeprefix(" "))
            elif line.startswith("event:"):
                name = line[6:].strip()
            elif line:
                other.append(line)  # comments (": keep-alive"), id:, retry:
        if not data_lines:
            return raw + b"\n\n"
        data = "\n".join(data_lines)
        if data.strip() == "[DONE]":
            self._done = True
            return self._flush_all() + b"data: [DONE]\n\n"
        try:
            obj = json.loads(data)
        except ValueError:
            masked, found = self.r.redact(data)  # not JSON: still never let a secret through
            self.findings.extend(found)
            return _frame(name, other, masked)
        if not isinstance(obj, dict):
            return _frame(name, other, json.dumps(redact_json(obj, self.r, self.findings)))
        if self.api == "chat":
            events = self._chat(obj)
        else:
            events = self._responses(obj)
        if self.api == "responses" and name:  # an inserted event is named after its own type
            return b"".join(_frame(e.get("type") or name, other, json.dumps(e)) for e in events)
        return b"".join(_frame(name, other, json.dumps(e)) for e in events)

    # --- chat completions ----------------------------------------------------------------------------------

    def _chat(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        self._last_chunk = obj
        for choice in obj.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            idx = choice.get("index", 0)
            delta = choice.get("delta")
            if isinstance(delta, dict):
                for field in _CHAT_TEXT_FIELDS:
                    if isinstance(delta.get(field), str):
                        delta[field] = self._field((idx, field)).feed(delta[field])
                for call in delta.get("tool_calls") or []:
                    fn = call.get("function") if isinstance(call, dict) else None
                    if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                        fn["arguments"] = self._field((idx, "tool", call.get("index", 0))).feed(fn["arguments"])
            if choice.get("finish_reason") is not None:
                if not isinstance(delta, dict):
                    delta = choice["delta"] = {}
                self._flush_choice(idx, delta)
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self.on_usage(str(obj.get("model") or ""), usage.get("prompt_tokens"), usage.get("completion_tokens"))
        return [obj]

    def _flush_choice(self, idx: Any, delta: dict[str, Any]) -> None:
        for key in [k for k in self._fields if k[0] == idx]:
            field = self._fields.pop(key)
            rest = field.flush()
            self.findings.extend(field.findings)
            if not rest:
                continue
            if key[1] == "tool":
                delta.setdefault("tool_calls", []).append({"index": key[2], "function": {"arguments": rest}})
            else:
                delta[key[1]] = (delta.get(key[1]) or "") + rest

    # --- responses -----------------------------------------------------------------------------------------

    def _responses(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        kind = obj.get("type")
        key = (obj.get("item_id"), obj.get("output_index"), obj.get("content_index"), obj.get("summary_index"))
        out: list[dict[str, Any]] = []
        if kind in _RESPONSES_DELTAS and isinstance(obj.get("delta"), str):
            obj["delta"] = self._field((kind, *key)).feed(obj["delta"])
            self._last_delta_event[(kind, *key)] = obj
        elif kind in _RESPONSES_DONE:
            delta_kind = _RESPONSES_DONE[kind]
            field = self._fields.pop((delta_kind, *key), None)
            if field is not None:
                rest = field.flush()
                self.findings.extend(field.findings)
                template = self._last_delta_event.pop((delta_kind, *key), None)
                if rest and template is not None:
                    extra = copy.copy(template)
                    extra["delta"] = rest
                    if isinstance(obj.get("sequence_number"), int):
                        extra["sequence_number"] = obj["sequence_number"] + self._seq_shift
                        self._seq_shift += 1
                    out.append(extra)
            obj = redact_json(obj, self.r, self.findings)
        else:
            obj = redact_json(obj, self.r, self.findings)
        if isinstance(obj.get("sequence_number"), int) and self._seq_shift:
            obj["sequence_number"] += self._seq_shift
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            response = obj.get("response") or {}
            usage = response.get("usage") if isinstance(response, dict) else None
            if isinstance(usage, dict):
                self.on_usage(str(response.get("model") or ""), usage.get("input_tokens"), usage.get("output_tokens"))
        out.append(obj)
        return out

    # --- end of stream -------------------------------------------------------------------------------------

    def _field(self, key: Any) -> StreamRedactor:
        field = self._fields.get(key)
        if field is None:
            field = self._fields[key] = StreamRedactor(self.r)
        return field

    def _flush_all(self) -> bytes:
        """Whatever fields still hold goes out in one last event, so nothing is lost and nothing leaks."""
        if not self._fields:
            return b""
        if self.api == "chat":
            base = self._last_chunk or {"object": "chat.completion.chunk"}
            chunk = {k: base[k] for k in ("id", "object", "created", "model") if k in base}
            choices: dict[Any, dict[str, Any]] = {}
            for key in list(self._fields):
                delta: dict[str, Any] = {}
                self._flush_choice(key[0], delta)
                if delta:
                    choices.setdefault(key[0], {"index": key[0], "delta": {}, "finish_reason": None})
                    choices[key[0]]["delta"].update(delta)
            self._fields.clear()
            if not choices:
                return b""
            chunk["choices"] = list(choices.values())
            return _frame(None, [], json.dumps(chunk))
        out = []
        for key, field in list(self._fields.items()):
            rest = field.flush()
            self.findings.extend(field.findings)
            template = self._last_delta_event.get(key)
            if rest and template is not None:
                extra = dict(template, delta=rest)
                out.append(_frame(extra.get("type"), [], json.dumps(extra)))
        self._fields.clear()
        return b"".join(out)


def _event_end(buf: bytes) -> tuple[int, int]:
    """Index and length of the first blank-line separator (``\\n\\n`` or ``\\r\\n\\r\\n``), or (-1, 0)."""
    a = buf.find(b"\n\n")
    b = buf.find(b"\r\n\r\n")
    if a < 0 and b < 0:
        return -1, 0
    if b >= 0 and (a < 0 or b < a):
        return b, 4
    return a, 2


def _frame(name: str | None, other: list[str], data: str) -> bytes:
    head = "".join(f"{line}\n" for line in other)
    if name:
        head += f"event: {name}\n"
    return (head + f"data: {data}\n\n").encode()
