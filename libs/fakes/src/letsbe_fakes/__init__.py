"""Loopback fakes of the external systems LetsBe talks to, speaking their documented wire formats.

Tests and the sandbox mode of ``make run`` use these same fakes; there is no second copy anywhere.
"""

from letsbe_fakes.server import LoopbackServer, QuickServer

__all__ = ["LoopbackServer", "QuickServer"]
