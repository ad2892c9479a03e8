"""What every ``letsbe-hub`` API command shares: the connection options, the HTTP call, one-line errors, and
output as a table (default) or the API's JSON (``--json``).

The CLI is a client of the hub's HTTP API and nothing else: the token's scopes decide what it may do, and the
hub records the token's name as the actor. Only ``bootstrap-token`` touches the database (``bootstrap.py``).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from letsbe_hub.orders.sse_client import iter_sse
from letsbe_platform import tls

DEFAULT_URL = "http://127.0.0.1:3847"
# Exit codes (also in `letsbe-hub --help`). 1 and 2 are `orders watch`'s FAILED and CANCELLED (2 is also click's
# usage error), so failures to get an answer start at 3.
EXIT_HUB_ERROR = 3  # the hub answered with an error status (4xx/5xx)
EXIT_NO_ANSWER = 4  # no answer to get: no token, hub unreachable or timed out


def default_token_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "letsbe" / "hub-token"


class CliError(Exception):
    """A failure the operator reads as one line on stderr; ``code`` is the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message, self.code = message, code


def problem_line(response: httpx.Response) -> str:
    """``<status> <title>: <detail>`` from an RFC 9457 answer (or the start of whatever else came back)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        title = str(body.get("title") or response.reason_phrase)
        detail = body.get("detail")
        text = title if not detail or str(detail) == title else f"{title}: {detail}"
    else:
        text = response.reason_phrase + (f": {response.text[:200]}" if response.text.strip() else "")
    return f"{response.status_code} {' '.join(text.split())}"  # one line, whatever the body holds


@dataclass
class Hub:
    """One operator's session with the hub: a bearer-token HTTP client and the chosen output format."""

    url: str
    token: str
    as_json: bool = False
    timeout: float = 30.0
    _client: httpx.Client | None = field(default=None, repr=False)

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                base_url=self.url.rstrip("/"),
                headers={"Authorization": f"Bearer {self.token}", "User-Agent": "letsbe-hub-cli"},
                timeout=self.timeout,
                verify=tls.client_context(),
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def call(self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        """The decoded JSON answer (``None`` for 204); an error answer or no answer raises ``CliError``."""
        params = {k: v for k, v in (params or {}).items() if v is not None and v != []}
        try:
            response = self.client.request(method, path, json=body, params=params)
        except httpx.TimeoutException as exc:
            raise CliError(
                f"the hub at {self.url} did not answer in time ({type(exc).__name__})", EXIT_NO_ANSWER
            ) from exc
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            raise CliError(f"cannot reach the hub at {self.url} ({type(exc).__name__}: {exc})", EXIT_NO_ANSWER) from exc
        if not response.is_success:
            raise CliError(problem_line(response), EXIT_HUB_ERROR)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise CliError(
                f"{self.url} answered {response.status_code} but not with JSON: is it the hub?", EXIT_NO_ANSWER
            ) from exc

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params=params)

    def post(self, path: str, body: Any = None) -> Any:
        return self.call("POST", path, body=body)

    def pages(self, path: str, params: dict[str, Any], all_pages: bool) -> Iterator[dict[str, Any]]:
        """Each page (``{items, next_cursor}``) of a list route; with ``all_pages`` it follows ``next_cursor`` to
        the last one."""
        params = dict(params)
        while True:
            page = self.get(path, **params)
            yield page
            if not all_pages or not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    def emit(self, data: Any, human: Callable[[Any], str | None] | None = None) -> None:
        """The API's JSON as is with ``--json``; else ``human(data)`` (a generic view without one)."""
        if self.as_json:
            typer.echo(json.dumps(data, indent=2))
            return
        text = human(data) if human is not None else render(data)
        if text:
            typer.echo(text)


# --- human output ---------------------------------------------------------------------------------------------------

Column = tuple[str, "str | Callable[[dict[str, Any]], Any]"]


def cell(value: Any, width: int = 60) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def table(items: Iterable[dict[str, Any]], columns: list[Column]) -> str:
    """Aligned columns with a header; ``(empty)`` for no rows."""
    rows = [[cell(c(i) if callable(c) else i.get(c)) for _, c in columns] for i in items]
    if not rows:
        return "(empty)"
    head = [h for h, _ in columns]
    widths = [max(len(r[n]) for r in [head, *rows]) for n in range(len(head))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in [head, *rows])


def render(data: Any) -> str:
    """A generic human view: one ``key  value`` line per field, lists of objects as sub-tables."""
    if isinstance(data, list):
        return table(data, [(k, k) for k in _keys(data)]) if all(isinstance(i, dict) for i in data) else cell(data)
    if not isinstance(data, dict):
        return cell(data)
    scalars = {k: v for k, v in data.items() if not _is_rows(v)}
    width = max((len(k) for k in scalars), default=0)
    out = [f"{k.ljust(width)}  {cell(v, 200)}" for k, v in scalars.items()]
    for k, v in data.items():
        if _is_rows(v):
            out += ["", f"{k}:", table(v, [(c, c) for c in _keys(v)]) if v else "(empty)"]
    return "\n".join(out)


def _is_rows(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(i, dict) for i in value)


def _keys(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r))


# The options of every list command: one page of the hub's size by default, --limit, --cursor, or --all pages.
Limit = Annotated[int | None, typer.Option(min=1, help="Items per page (default and maximum: the hub's).")]
CursorOpt = Annotated[str | None, typer.Option("--cursor", help="The next_cursor of a previous page.")]
AllPages = Annotated[bool, typer.Option("--all", help="Follow next_cursor to the last page.")]


def show_list(
    hub: Hub,
    path: str,
    params: dict[str, Any],
    columns: list[Column],
    *,
    limit: int | None = None,
    cursor: str | None = None,
    all_pages: bool = False,
) -> None:
    """A list route: one page as the API answers it (``{items, next_cursor}``), or every page (``--all``: with
    ``--json`` one JSON list of all the items)."""
    pages = list(hub.pages(path, {**params, "limit": limit, "cursor": cursor}, all_pages))
    items = [i for p in pages for i in p.get("items", [])]
    if hub.as_json:
        hub.emit(items if all_pages else pages[0])
        return
    typer.echo(table(items, columns))
    if pages[-1].get("next_cursor") and not all_pages:
        typer.echo(f"(more: --cursor {pages[-1]['next_cursor']}, or --all)", err=True)


async def follow(hub: Hub, path: str, on_event: Callable[[str, str | None, Any], Awaitable[int | None]]) -> int:
    """Follow a Server-Sent Events route until ``on_event(kind, id, data)`` returns an exit code. A dropped
    connection is resumed with ``Last-Event-ID`` (no event missed or repeated); a hub never reached is one error
    line at once."""
    last_id: str | None = None
    failures, connected = 0, False
    url = hub.url.rstrip("/") + path
    headers = {"Authorization": f"Bearer {hub.token}", "User-Agent": "letsbe-hub-cli"}
    async with httpx.AsyncClient(
        headers=headers, timeout=httpx.Timeout(30, read=None), verify=tls.client_context()
    ) as c:
        while True:
            try:
                resume = {"Last-Event-ID": last_id} if last_id else {}
                async with c.stream("GET", url, headers=resume) as response:
                    if not response.is_success:
                        await response.aread()
                        raise CliError(problem_line(response), EXIT_HUB_ERROR)
                    failures, connected = 0, True
                    async for event in iter_sse(response.aiter_lines()):
                        last_id = event.id or last_id
                        data = json.loads(event.data)
                        if (code := await on_event(event.event, event.id, data)) is not None:
                            return code
            except (httpx.TransportError, httpx.InvalidURL) as exc:
                failures += 1
                if not connected:
                    raise CliError(
                        f"cannot reach the hub at {hub.url} ({type(exc).__name__}: {exc})", EXIT_NO_ANSWER
                    ) from exc
                if failures > 5:
                    raise CliError(f"lost the hub at {hub.url} ({type(exc).__name__})", EXIT_NO_ANSWER) from exc
                await asyncio.sleep(min(2.0**failures, 10.0))


# --- the command decorator ------------------------------------------------------------------------------------------

HubUrl = Annotated[
    str, typer.Option("--hub-url", envvar="LETSBE_HUB_URL", help="The hub's base URL.", show_default=True)
]
TokenOpt = Annotated[
    str | None,
    typer.Option("--token", envvar="LETSBE_HUB_TOKEN", help="An operator API token (lbh_…).", show_default=False),
]
TokenFile = Annotated[
    Path | None,
    typer.Option(
        "--token-file",
        envvar="LETSBE_HUB_TOKEN_FILE",
        help="A file holding the token (default: ~/.config/letsbe/hub-token when it exists).",
        show_default=False,
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the API's JSON answer as is.")]

_COMMON = [
    inspect.Parameter("hub_url", inspect.Parameter.KEYWORD_ONLY, default=DEFAULT_URL, annotation=HubUrl),
    inspect.Parameter("token", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=TokenOpt),
    inspect.Parameter("token_file", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=TokenFile),
    inspect.Parameter("as_json", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=AsJson),
]


def resolve_token(token: str | None, token_file: Path | None) -> str:
    if token:
        return _checked(token.strip())
    path = token_file or default_token_file()
    if token_file is None and not path.exists():
        raise CliError(
            "no API token: pass --token, set LETSBE_HUB_TOKEN or LETSBE_HUB_TOKEN_FILE, or put it in "
            f"{path} (the first one: `letsbe-hub bootstrap-token` on the hub host)",
            EXIT_NO_ANSWER,
        )
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise CliError(f"cannot read the token file {path}: {exc.strerror or exc}", EXIT_NO_ANSWER) from exc
    if not text:
        raise CliError(f"the token file {path} is empty", EXIT_NO_ANSWER)
    return _checked(text)


def _checked(token: str) -> str:
    if not token.isascii() or not token.isprintable() or " " in token:
        raise CliError("the API token holds characters no token has (spaces, control or non-ASCII)", EXIT_NO_ANSWER)
    return token


def run(work: Callable[[], Any]) -> Any:
    """Run ``work``; a ``CliError`` becomes one line on stderr and its exit code (never a traceback)."""
    try:
        return work()
    except CliError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(exc.code) from None
    except KeyboardInterrupt:  # Ctrl-C, e.g. ending a watch: the shell's usual 130, no traceback
        raise typer.Exit(130) from None


def api_command(app: typer.Typer, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn(hub, …)`` as ``name`` with the shared --hub-url/--token/--token-file/--json options."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        own = [p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.name != "hub"]

        def command(*, hub_url: str, token: str | None, token_file: Path | None, as_json: bool, **kwargs: Any) -> Any:
            def work() -> Any:
                hub = Hub(hub_url, resolve_token(token, token_file), as_json)
                try:
                    return fn(hub, **kwargs)
                finally:
                    hub.close()

            return run(work)

        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + _COMMON
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        command.__name__, command.__doc__ = fn.__name__, fn.__doc__
        app.command(name)(command)
        return fn

    return register
