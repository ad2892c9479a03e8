"""A failing test is reported, not a crash of the run: pytest parses source to show a failure (conftest.py)."""

import ast
import gc


class _Cycle:
    """Garbage only the collector frees; its finalizer parses, as logging an unretrieved task's traceback does."""

    def __init__(self) -> None:
        self.me = self

    def __del__(self) -> None:
        ast.parse("(((a))) + b")


def _parse_with_collections_in_between(depth: int) -> None:
    if depth:  # a deeper stack than the finalizers': the depths differ, as between a test and a finalizer
        return _parse_with_collections_in_between(depth - 1)
    source = "\n".join(f"x{i} = [{i}, ({i}, {{'k': {i}}})]" for i in range(3000))
    for _ in range(5):  # unguarded, the first parse already fails (measured: every time, of many runs)
        for _ in range(200):
            _Cycle()
        ast.parse(source)


def test_a_finalizer_that_parses_during_a_parse_breaks_nothing():
    threshold = gc.get_threshold()
    gc.freeze()  # what the test process holds is not walked at each of the many collections (seconds in a full run)
    gc.set_threshold(50, 10, 10)
    try:
        _parse_with_collections_in_between(20)  # SystemError: AST constructor recursion depth mismatch, unguarded
    finally:
        gc.set_threshold(*threshold)
        gc.collect()
        gc.unfreeze()
