"""Exponential backoff with full jitter (sleep a random time in [0, min(cap, base·2^attempt)]).

Full jitter spreads a fleet that lost the hub at the same moment, so it does not come back in one wave.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, base: float, cap: float, rng: random.Random | None = None):
        self.base = base
        self.cap = cap
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 32)
        return self._rng.uniform(0, ceiling)

    def reset(self) -> None:
        self.attempt = 0


def jittered(interval: float, fraction: float, rng: random.Random | None = None) -> float:
    r = rng or random
    return max(0.05, interval * (1 + r.uniform(-fraction, fraction)))
