"""The sandbox's own setting: LETSBE_SANDBOX_SLOW_SECONDS is seconds, and anything else stops it with its name."""

import pytest

from letsbe_sandbox.__main__ import slow_from_env


def test_slow_seconds_default_to_zero_and_take_a_fraction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LETSBE_SANDBOX_SLOW_SECONDS", raising=False)
    assert slow_from_env() == 0
    monkeypatch.setenv("LETSBE_SANDBOX_SLOW_SECONDS", "2.5")
    assert slow_from_env() == 2.5


@pytest.mark.parametrize("raw", ["abc", "-1", "601", "nan", "inf"])
def test_a_bad_slow_setting_stops_the_sandbox_with_a_clear_message(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LETSBE_SANDBOX_SLOW_SECONDS", raw)
    with pytest.raises(SystemExit, match=r"LETSBE_SANDBOX_SLOW_SECONDS.*expected seconds between 0 and 600"):
        slow_from_env()
