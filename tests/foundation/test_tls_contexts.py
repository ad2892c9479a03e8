"""Every HTTP client our processes build shares the process's one TLS context (``letsbe_platform.tls``).

httpx builds a verifying context for every client that is not given one, whatever its URL (plain HTTP included):
loading the CA bundle costs ~50 ms of CPU and ~0.8 MB each time. A client built per call, per page view, per
readiness poll or per webhook delivery paid that every time. Read from the AST of every package's code: a call that
builds an httpx client or transport passes ``verify=`` (or a ``transport=`` that does), and the Cloudflare SDK gets
an ``http_client=``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILDERS = {"AsyncClient", "Client", "AsyncHTTPTransport", "HTTPTransport", "DefaultAsyncHttpxClient"}
SDK_CLIENTS = {"AsyncCloudflare", "Cloudflare"}


def _called_name(call: ast.Call) -> str | None:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def _imported_packages(tree: ast.Module) -> set[str]:
    """The top-level packages a module imports (``import httpx``, ``from httpx import …``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def clients_without_the_shared_context(root: Path = ROOT) -> list[str]:
    found = []
    for path in sorted([*root.glob("services/*/src/**/*.py"), *root.glob("libs/*/src/**/*.py")]):
        tree = ast.parse(path.read_text(), str(path))
        if not _imported_packages(tree) & {"httpx", "cloudflare"}:
            continue
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
            name, given = _called_name(call), {k.arg for k in call.keywords}
            missing = (name in BUILDERS and not given & {"verify", "transport"}) or (
                name in SDK_CLIENTS and "http_client" not in given
            )
            if missing:
                found.append(f"{path.relative_to(root)}:{call.lineno} {name}(...)")
    return found


def test_every_http_client_is_given_the_processes_tls_context():
    assert clients_without_the_shared_context() == []


def test_the_check_finds_a_client_built_without_it(tmp_path):
    package = tmp_path / "libs" / "x" / "src" / "x"
    package.mkdir(parents=True)
    (package / "poll.py").write_text(
        "import httpx\n\nasync def ready(url):\n    async with httpx.AsyncClient(timeout=1) as c:\n"
        "        return await c.get(url)\n"
    )
    (package / "shared.py").write_text(
        "import httpx\nfrom letsbe_platform.tls import client_context\n\n"
        "def make():\n    return httpx.AsyncClient(verify=client_context())\n"
    )
    assert clients_without_the_shared_context(tmp_path) == ["libs/x/src/x/poll.py:4 AsyncClient(...)"]
