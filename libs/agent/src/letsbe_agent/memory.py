"""Give freed heap memory back to the kernel after a large, short-lived build (glibc keeps it otherwise).

Rebuilding the Secrets Proxy's redactor for 1,000 secrets frees several MB that glibc would keep mapped, resident
and counted against the container's limit: ``trim()`` returns the free pages (``malloc_trim``). A no-op where the
C library has no such call.
"""

from __future__ import annotations

import ctypes
import functools


@functools.cache
def _malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def trim() -> None:
    fn = _malloc_trim()
    if fn is not None:
        fn(0)
