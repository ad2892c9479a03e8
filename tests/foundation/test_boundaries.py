"""The boundaries between the services, read from the imports of every Python file (its AST, so imports inside
functions count too).

- A service's code and tests import no other service's package (nor its test support package): what two
  services share lives in ``libs/`` (contracts, platform), and a test of two services together lives under ``tests/``.
- ``libs/`` import no service, in code or tests.
- No module that production installs (a service's ``src``, and the libs the services depend on) imports pytest or
  the fakes.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEST_ONLY = {"pytest", "pytest_asyncio", "_pytest", "letsbe_fakes"}


def owners(root: Path) -> dict[str, str]:
    """Top-level package name -> the service folder it belongs to (its src package and its test support)."""
    found = {}
    for service in sorted((root / "services").iterdir()):
        for packages in (service / "src", service / "tests" / "support"):
            for pkg in packages.glob("*/__init__.py") if packages.is_dir() else ():
                found[pkg.parent.name] = service.name
    return found


def shipped_libs(root: Path) -> set[Path]:
    """The libs/ folders a service depends on, directly or through another lib: production installs them."""
    libs = {}
    for pyproject in (root / "libs").glob("*/pyproject.toml"):
        libs[tomllib.loads(pyproject.read_text())["project"]["name"]] = pyproject.parent

    def deps(pyproject: Path) -> set[str]:
        project = tomllib.loads(pyproject.read_text())["project"]
        names = (re.split(r"[\s\[<>=;!~]", d, maxsplit=1)[0] for d in project["dependencies"])
        return {n for n in names if n in libs}

    todo = set().union(*(deps(p) for p in (root / "services").glob("*/pyproject.toml")))
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        seen.add(name)
        todo |= deps(libs[name] / "pyproject.toml") - seen
    return {libs[name] for name in seen}


def imports(path: Path) -> set[str]:
    """The top-level names of every absolute import in a file."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def breaches(root: Path) -> list[str]:
    owner = owners(root)
    shipped = shipped_libs(root)
    found = []
    for path in sorted([*root.glob("services/*/src/**/*.py"), *root.glob("services/*/tests/**/*.py")]):
        service = path.relative_to(root).parts[1]
        in_src = path.relative_to(root).parts[2] == "src"
        for name in sorted(imports(path)):
            if owner.get(name, service) != service:
                found.append(f"{path.relative_to(root)} imports {name} (service {owner[name]})")
            if in_src and name in TEST_ONLY:
                found.append(f"{path.relative_to(root)} imports {name} (test code in production)")
    for path in sorted([*root.glob("libs/*/src/**/*.py"), *root.glob("libs/*/tests/**/*.py")]):
        lib = root / "libs" / path.relative_to(root).parts[1]
        in_src = path.relative_to(root).parts[2] == "src"
        for name in sorted(imports(path)):
            if name in owner:
                found.append(f"{path.relative_to(root)} imports {name} (service {owner[name]}; libs import no service)")
            if in_src and lib in shipped and name in TEST_ONLY:
                found.append(f"{path.relative_to(root)} imports {name} (test code in production)")
    return found


def test_no_service_imports_another_and_production_imports_no_test_code():
    assert breaches(ROOT) == []


def test_the_walk_sees_what_it_must():
    """Guards the test above against passing because it reads nothing (a moved folder, a renamed package)."""
    owner = owners(ROOT)
    assert {"letsbe_hub", "letsbe_dns", "letsbe_provisioner", "hub_testing"} <= owner.keys()
    assert {ROOT / "libs" / "contracts", ROOT / "libs" / "platform"} <= shipped_libs(ROOT)
    assert "letsbe_hub" in imports(ROOT / "services/hub-api/tests/support/hub_testing/__init__.py")
