"""JSON Schemas of the events, for consumers outside Python.

One file per event version, ``libs/contracts/schemas/events/<subject>.json``: the whole envelope as it travels on
NATS, with ``type`` and ``version`` fixed and ``payload`` the event's own schema. The files are generated from the
models and checked in; ``letsbe-event-schemas`` rewrites them and ``letsbe-event-schemas --check`` (and the test
suite) fails when one has drifted from its model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: --help answers without building every event model
    from letsbe_contracts.events import Event

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas" / "events"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def event_schema(cls: type[Event]) -> dict[str, Any]:
    """The envelope schema for one event version (the payload as producers serialise it)."""
    from letsbe_contracts.events import Envelope

    payload = cls.model_json_schema(mode="serialization")
    defs = payload.pop("$defs", {})
    envelope = Envelope.model_json_schema(mode="serialization")
    envelope.pop("$defs", None)
    properties = envelope["properties"]
    properties["type"] = {"const": cls.TYPE, "title": "Type"}
    properties["version"] = {"const": cls.VERSION, "title": "Version"}
    properties["payload"] = payload
    schema: dict[str, Any] = {
        "$schema": DIALECT,
        "$id": f"{cls.SUBJECT}.json",
        **envelope,
        "title": cls.SUBJECT,
        "description": (cls.__doc__ or "").strip() or f"The {cls.TYPE} event, version {cls.VERSION}.",
    }
    if defs:
        schema["$defs"] = defs
    return schema


def render_all() -> dict[str, str]:
    """File name → file text for every registered event version."""
    from letsbe_contracts.events import EVENT_TYPES

    return {
        f"{cls.SUBJECT}.json": json.dumps(event_schema(cls), indent=2, sort_keys=True) + "\n"
        for cls in sorted(EVENT_TYPES.values(), key=lambda c: c.SUBJECT)
    }


def drift(directory: Path = SCHEMA_DIR) -> list[str]:
    """What differs between the checked-in files and the models (empty when they agree)."""
    expected = render_all()
    present = {p.name for p in directory.glob("*.json")} if directory.is_dir() else set()
    problems = [f"{name}: missing" for name in sorted(expected.keys() - present)]
    problems += [f"{name}: no such event (stale file)" for name in sorted(present - expected.keys())]
    problems += [
        f"{name}: differs from its model"
        for name in sorted(expected.keys() & present)
        if (directory / name).read_text() != expected[name]
    ]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="letsbe-event-schemas", description="Write (or check) the events' JSON Schema files."
    )
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file has drifted")
    parser.add_argument("--dir", type=Path, default=SCHEMA_DIR, help=f"where the files live (default {SCHEMA_DIR})")
    args = parser.parse_args(argv)
    if args.check:
        problems = drift(args.dir)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("run letsbe-event-schemas to regenerate them", file=sys.stderr)
        return 1 if problems else 0
    args.dir.mkdir(parents=True, exist_ok=True)
    files = render_all()
    for stale in set(p.name for p in args.dir.glob("*.json")) - files.keys():
        (args.dir / stale).unlink()
    for name, text in files.items():
        (args.dir / name).write_text(text)
    print(f"wrote {len(files)} schema(s) to {args.dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
