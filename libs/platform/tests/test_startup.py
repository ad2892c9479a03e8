"""A service's start-up objects are built with the collector off and then kept out of its sight."""

from __future__ import annotations

import gc

from letsbe_platform.startup import lifelong


class _Route:  # stands for what an import builds: objects the collector tracks
    pass


def test_what_is_built_inside_is_frozen_and_the_collector_runs_again_after():
    gc.unfreeze()  # the test process froze its collected tests
    try:
        before = gc.get_freeze_count()
        with lifelong():
            assert not gc.isenabled()
            built = [_Route() for _ in range(1000)]
        assert gc.isenabled()
        assert gc.get_freeze_count() >= before + len(built)
    finally:
        gc.freeze()


def test_a_collector_switched_off_before_stays_off():
    gc.disable()
    try:
        with lifelong():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
