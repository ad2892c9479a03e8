"""Server-sent events from the upstream, rewritten on the fly: each event is forwarded as soon as it is complete,
every string in it (keys too, whatever the field, error events included) redacted, and usage read from it.

Text that arrives in pieces goes through a per-field StreamRedactor, so a secret split over two events is caught:
Chat Completions: every string under ``choices[i].delta`` (``content``, ``tool_calls[j].function.arguments``,
and fields this proxy has never heard of), except the few that are sent whole (``_WHOLE``); what a field still
holds back is flushed into the event that carries ``finish_reason``, or into one extra chunk before ``[DONE]``.
Responses: the ``delta`` of every ``*.delta`` event, per (type, item, part); held text is flushed as one extra
delta event just before the matching ``*.done`` event (later ``sequence_number``s shift by one so they stay unique
and ordered). Comment, ``id:`` and ``retry:`` lines and events without data are redacted as text. ``logprobs``
are dropped (walk.drop_token_views): they spell the text token by token, where a split secret cannot be masked.

The proxy asks for the final usage chunk (``stream_options.include_usage``) to meter the call; if the client did
not ask for it, ``strip_usage`` removes it again (a chunk with no choices breaks the documented client loop).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from letsbe_secrets_proxy.proxy.redact import Finding, Redactor, StreamRedactor
from letsbe_secrets_proxy.proxy.walk import drop_token_views, redact_json

UsageSink = Callable[[str, Any, Any], None]

# Delta fields that carry a whole value in one chunk (an identifier or a name), not text to concatenate: they are
# redacted whole. Every other string under a delta is treated as streamed text.
_WHOLE = frozenset({"role", "id", "type", "name", "call_id", "data"})
_TERMINAL = ("response.completed", "response.incomplete", "response.failed")


class SSERewriter:
    """Feed raw upstream bytes; get bytes to send downstream. ``close()`` returns what is left at the end."""

    def __init__(self, redactor: Redactor, api: str, on_usage: UsageSink, strip_usage: bool = False):
        self.r = redactor
        self.api = api  # "chat" or "responses"
        self.on_usage = on_usage
        self.strip_usage = strip_usage
        self.findings: list[Finding] = []
        self._buf = b""
        self._fields: dict[Any, StreamRedactor] = {}
        self._last_chunk: dict[str, Any] | None = None
        self._last_delta_event: dict[Any, dict[str, Any]] = {}
        self._seq_shift = 0
        self._next_seq = 0
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
                name = self._text(line[6:].strip())
            elif line:
                other.append(self._text(line))  # comments (": keep-alive"), id:, retry:
        if not data_lines:
            return "".join(f"{line}\n" for line in other).encode() + b"\n" if other else b""
        data = "\n".join(data_lines)
        if data.strip() == "[DONE]":
            self._done = True
            return self._flush_all() + _frame(name, other, "[DONE]")
        try:
            obj = json.loads(data)
        except ValueError:
            return _frame(name, other, self._text(data))  # not JSON: still never let a secret through
        if not isinstance(obj, dict):
            return _frame(name, other, json.dumps(redact_json(obj, self.r, self.findings)))
        if "logprobs" in data:
            obj = drop_token_views(obj)
        if self.api == "chat":
            events = self._chat(obj)
        else:
            events = self._responses(obj)
        if self.api == "responses" and name:  # an inserted event is named after its own type
            return b"".join(_frame(e.get("type") or name, other, json.dumps(e)) for e in events)
        return b"".join(_frame(name, other, json.dumps(e)) for e in events)

    def _text(self, text: str) -> str:
        masked, found = self.r.redact(text)
        self.findings.extend(found)
        return masked

    # --- chat completions ----------------------------------------------------------------------------------

    def _chat(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        choices = obj.get("choices")
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self.on_usage(str(obj.get("model") or ""), usage.get("prompt_tokens"), usage.get("completion_tokens"))
        if self.strip_usage:
            if choices == [] and "usage" in obj:
                return []  # the usage-only chunk the proxy asked for on its own account
            obj.pop("usage", None)
        held: dict[int, dict[str, Any]] = {}  # position in choices → the delta, already redacted as a stream
        for pos, choice in enumerate(choices if isinstance(choices, list) else []):
            if isinstance(choice, dict) and isinstance(choice.get("delta"), dict):
                held[pos] = self._stream_delta(choice.pop("delta"), (_index(choice, pos),))
        obj = redact_json(obj, self.r, self.findings)  # everything that is not streamed text, keys included
        self._last_chunk = obj
        for pos, choice in enumerate(obj.get("choices") if isinstance(obj.get("choices"), list) else []):
            if not isinstance(choice, dict):
                continue
            if pos in held:
                choice["delta"] = held[pos]
            if choice.get("finish_reason") is not None:
                if not isinstance(choice.get("delta"), dict):
                    choice["delta"] = {}
                self._flush_choice(_index(choice, pos), choice["delta"])
        return [obj]

    def _stream_delta(self, node: Any, path: tuple[Any, ...]) -> Any:
        """A copy of a delta: streamed text fed through its field's StreamRedactor, the rest redacted whole."""
        if isinstance(node, dict):
            out: dict[Any, Any] = {}
            for k, v in node.items():
                key = self._text(k) if isinstance(k, str) else k
                if isinstance(v, str) and k not in _WHOLE:
                    out[key] = self._field((*path, k)).feed(v)
                else:
                    out[key] = self._stream_delta(v, (*path, k))
            return out
        if isinstance(node, list):  # items of a streamed list (tool_calls) are matched by their "index"
            return [self._stream_delta(v, (*path, ("index", v["index"]) if isinstance(v, dict)
                                           and isinstance(v.get("index"), int) else i)) for i, v in enumerate(node)]
        if isinstance(node, str):
            return self._text(node)
        return node

    def _flush_choice(self, idx: Any, delta: dict[str, Any]) -> None:
        for key in [k for k in self._fields if k[0] == idx]:
            field = self._fields.pop(key)
            rest = field.flush()
            self.findings.extend(field.findings)
            if rest:
                _append_at(delta, key[1:], rest)

    # --- responses -----------------------------------------------------------------------------------------

    def _responses(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        kind = obj.get("type")
        key = (obj.get("item_id"), obj.get("output_index"), obj.get("content_index"), obj.get("summary_index"))
        out: list[dict[str, Any]] = []
        if isinstance(kind, str) and kind.endswith(".delta") and isinstance(obj.get("delta"), str):
            delta = self._field((kind, *key)).feed(obj.pop("delta"))
            obj = redact_json(obj, self.r, self.findings)
            obj["delta"] = delta
            self._last_delta_event[(kind, *key)] = obj
        else:
            if isinstance(kind, str) and kind.endswith(".done"):
                pending = [(kind.removesuffix(".done") + ".delta", *key)]
            elif kind in _TERMINAL:  # the answer ends here: whatever is still held goes out first
                pending = list(self._fields)
            else:
                pending = []
            for field_key in pending:
                out.extend(self._flush_delta(field_key, obj.get("sequence_number")))
            obj = redact_json(obj, self.r, self.findings)
        if isinstance(obj.get("sequence_number"), int):
            obj["sequence_number"] += self._seq_shift
            self._next_seq = obj["sequence_number"] + 1
        if kind in _TERMINAL:
            response = obj.get("response") or {}
            usage = response.get("usage") if isinstance(response, dict) else None
            if isinstance(usage, dict):
                self.on_usage(str(response.get("model") or ""), usage.get("input_tokens"), usage.get("output_tokens"))
        out.append(obj)
        return out

    def _flush_delta(self, key: Any, seq: Any) -> list[dict[str, Any]]:
        """One extra delta event with what the field still holds (numbered just before ``seq``), or nothing."""
        field = self._fields.pop(key, None)
        if field is None:
            return []
        rest = field.flush()
        self.findings.extend(field.findings)
        template = self._last_delta_event.pop(key, None)
        if not rest or template is None:
            return []
        extra = dict(template, delta=rest)
        if isinstance(seq, int):
            extra["sequence_number"] = seq + self._seq_shift
            self._seq_shift += 1
        return [extra]

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
            for idx in dict.fromkeys(k[0] for k in self._fields):
                delta: dict[str, Any] = {}
                self._flush_choice(idx, delta)
                if delta:
                    choices[idx] = {"index": idx, "delta": delta, "finish_reason": None}
            self._fields.clear()
            if not choices:
                return b""
            chunk["choices"] = list(choices.values())
            return _frame(None, [], json.dumps(chunk))
        out = []
        for key in list(self._fields):
            for extra in self._flush_delta(key, None):
                if "sequence_number" in extra:
                    extra["sequence_number"] = self._next_seq
                    self._next_seq += 1
                out.append(_frame(extra.get("type"), [], json.dumps(extra)))
        self._fields.clear()
        return b"".join(out)


def _index(choice: dict[str, Any], pos: int) -> int:
    """A choice's index (its position if the upstream sends none, or something that is not a number)."""
    index = choice.get("index")
    return index if isinstance(index, int) else pos


def _append_at(delta: dict[str, Any], path: tuple[Any, ...], text: str) -> None:
    """Put held-back text where its field lives: ``("tool_calls", ("index", 0), "function", "arguments")``."""
    node: Any = delta
    for i, part in enumerate(path):
        last = i == len(path) - 1
        if isinstance(part, tuple):  # a list item known by its "index"
            item = next((x for x in node if isinstance(x, dict) and x.get("index") == part[1]), None)
            if item is None:
                item = {"index": part[1]}
                node.append(item)
            node = item
        elif isinstance(part, int):
            node.append({})
            node = node[-1]
        elif last:
            node[part] = (node.get(part) or "") + text if isinstance(node.get(part) or "", str) else text
        else:
            nxt = path[i + 1]
            default: Any = [] if isinstance(nxt, tuple | int) else {}
            if not isinstance(node.get(part), type(default)):
                node[part] = default
            node = node[part]


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
