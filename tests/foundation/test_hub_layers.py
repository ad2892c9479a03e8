"""The hub's contexts are layered: no two contexts import each other, in either direction, at any depth of a module
(imports inside functions count too). A context is a first-level package or module of ``letsbe_hub`` (``orders``,
``config``, ``app``).

What sits where: ``config`` is a leaf; the payment gateway (``payments``) is below orders and billing, the Stripe
webhook (``webhooks``) above them; providers below servers; tenants below commands, llm and lifecycle (which
decommissions a tenant and shows its job).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HUB = ROOT / "services" / "hub-api" / "src" / "letsbe_hub"


def context_imports(package: Path) -> dict[tuple[str, str], list[str]]:
    """(importing context, imported context) -> where: ``file:line``, for every import between two contexts."""
    name = package.name
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package)
        context = rel.parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                # ``from letsbe_hub import orders`` names the context in the imported names
                modules = [f"{node.module}.{a.name}" for a in node.names] if node.module == name else [node.module]
            else:
                continue
            for module in modules:
                parts = module.split(".")
                if parts[0] == name and len(parts) > 1 and parts[1] != context:
                    found[(context, parts[1])].append(f"{rel}:{node.lineno}")
    return found


def two_way_pairs(package: Path) -> list[str]:
    edges = context_imports(package)
    return [
        f"{a} <-> {b}: {a} imports {b} at {', '.join(edges[a, b])}; {b} imports {a} at {', '.join(edges[b, a])}"
        for a, b in sorted(edges)
        if a < b and (b, a) in edges
    ]


def test_no_two_hub_contexts_import_each_other():
    assert two_way_pairs(HUB) == []


def test_config_is_a_leaf():
    assert [f"config imports {b}" for a, b in context_imports(HUB) if a == "config"] == []


def test_the_walk_sees_what_it_must(tmp_path):
    """Guards the tests above against passing because they read nothing, and shows they catch a function-level
    import that closes a cycle."""
    edges = context_imports(HUB)
    assert ("orders", "payments") in edges and ("webhooks", "orders") in edges and ("servers", "providers") in edges
    pkg = tmp_path / "letsbe_hub"
    (pkg / "orders").mkdir(parents=True)
    (pkg / "orders" / "service.py").write_text("from letsbe_hub.payments import gateway\n")
    (pkg / "payments.py").write_text("def f():\n    from letsbe_hub import orders\n")
    assert two_way_pairs(pkg) == [
        "orders <-> payments: orders imports payments at orders/service.py:1; payments imports orders at payments.py:2"
    ]


def test_allocation_knows_providers_only_by_their_protocol():
    """The allocation worker asks a ``ServerAllocator`` for servers; which provider that is (Hetzner) is wiring."""
    path = HUB / "servers" / "allocation.py"
    imported = {
        node.module
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("letsbe_hub.providers")
    }
    assert imported <= {"letsbe_hub.providers.base", "letsbe_hub.providers.errors"}, imported
