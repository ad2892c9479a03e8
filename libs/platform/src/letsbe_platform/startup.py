"""A service's start: its imports and settings are built with the garbage collector off, then frozen.

Start-up builds a few hundred thousand objects (modules, classes, pydantic schemas, routes: ~270,000 in the hub)
that live as long as the process. CPython's collector, run every 700 allocations, walks them again and again while
they are being built: a quarter of the hub's start-up CPU (3.1–3.7 → 2.4–2.6 s measured). Almost none of them is
garbage (a collection right after frees ~1,200 of them), so they are moved out of the collector's sight for good
(``gc.freeze``, made for this): start-up no longer pays for them, and neither does any later full collection, which
would otherwise pause every request of a running service for as long as walking them takes.

Used by the processes' entry points (``__main__``) only, before the imports it speeds up (this module imports
nothing else): a test process that serves an app in-process must not freeze its tests' garbage with it.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def lifelong() -> Iterator[None]:
    """What is built inside lives as long as the process: the collector is off meanwhile, then does not see it."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if collecting:
            gc.enable()
