"""Redact every string in a parsed JSON document (message contents, tool results, tool-call arguments …), keys
included, and every number whose digits spell a registered secret (a PIN sent as a JSON number)."""

from __future__ import annotations

import json
from typing import Any

from letsbe_secrets_proxy.proxy.redact import Finding, Redactor


def redact_json(doc: Any, redactor: Redactor, findings: list[Finding], path: list[str] | None = None,
                where: list[str] | None = None) -> Any:
    """A copy of ``doc`` with secrets masked. ``findings`` gets what was found; ``where`` (if given) the JSON
    path of each finding, for an error message that says where without saying what."""
    if isinstance(doc, str):
        masked, found = redactor.redact(doc)
        if found:
            findings.extend(found)
            if where is not None:
                where.extend(_path(path) for _ in found)
        return masked
    if isinstance(doc, dict):
        out = {}
        for k, v in doc.items():
            key = redact_json(k, redactor, findings, path, where) if isinstance(k, str) else k
            out[key] = redact_json(v, redactor, findings, [*(path or []), str(k)] if where is not None else None,
                                   where)
        return out
    if isinstance(doc, list):
        return [
            redact_json(v, redactor, findings, [*(path or []), str(i)] if where is not None else None, where)
            for i, v in enumerate(doc)
        ]
    if isinstance(doc, int | float) and not isinstance(doc, bool) and abs(doc) >= 10 ** (redactor.min_form - 1):
        masked = redact_json(json.dumps(doc), redactor, findings, path, where)
        return masked if masked != json.dumps(doc) else doc
    return doc


def drop_token_views(doc: Any) -> Any:
    """``logprobs`` spell the answer one token at a time: a secret split over tokens cannot be masked there, so
    the proxy does not pass them on (the text itself is redacted as usual)."""
    if isinstance(doc, dict):
        return {k: None if k in TOKEN_VIEWS else drop_token_views(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [drop_token_views(v) for v in doc]
    return doc


TOKEN_VIEWS = frozenset({"logprobs", "top_logprobs"})


def _path(parts: list[str] | None) -> str:
    out = ""
    for p in parts or []:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "$"
