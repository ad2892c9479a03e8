"""Comments and docstrings name the domain ("the chat relay", "tenant key rotation"), never the issue that asked for
the code: an issue number tells a newcomer nothing and outlives the tracker (docs/conventions.md)."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ISSUE = re.compile(r"\b(?:issue|ticket)s?\s*#?\d+", re.IGNORECASE)


def prose(path: Path) -> list[tuple[int, str]]:
    """(line, text) of each comment and string literal in a Python file: docstrings are strings."""
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    return [(t.start[0], t.string) for t in tokens if t.type in (tokenize.COMMENT, tokenize.STRING)]


def test_no_comment_or_docstring_names_an_issue_number() -> None:
    files = [p for top in ("services", "libs", "tests", "bench", "deploy") for p in (ROOT / top).rglob("*.py")]
    assert len(files) > 500  # the tree was found
    found = [f"{p.relative_to(ROOT)}:{line}: {ISSUE.search(text)[0]}"  # type: ignore[index]
             for p in files for line, text in prose(p) if ISSUE.search(text)]  # fmt: skip
    assert found == []
