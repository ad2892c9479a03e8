"""Each sandbox on a machine runs its VPSes on a /24 of loopback no other running sandbox holds: two test runs
side by side (two xdist workers, two checkouts) once both bound their agents on 127.206.0.2 and each test lost the
other's agents."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from letsbe_sandbox import world
from letsbe_sandbox.world import Sandbox


@pytest.fixture
def claims(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "claims"
    monkeypatch.setattr(world, "ADDRESS_CLAIMS", folder)
    return folder


def block(sandbox: Sandbox) -> str:
    first = sandbox.first_vps_ipv4
    return f"127.{first >> 16 & 255}.{first >> 8 & 255}.0/24"


def same_draws_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worst luck: every sandbox draws the same block first (a draw of 206 for B, 0 for C), then others."""
    draws: dict[int, int] = {}

    def randbelow(n: int) -> int:
        draws[n] = draws.get(n, -1) + 1
        return (205 + draws[n]) % n if n == 254 else draws[n]

    monkeypatch.setattr(world.secrets, "randbelow", randbelow)


def test_two_sandboxes_that_draw_the_same_block_still_get_different_ones(
    tmp_path: Path, claims: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    same_draws_every_time(monkeypatch)
    first = Sandbox(tmp_path / "one")
    same_draws_every_time(monkeypatch)
    second = Sandbox(tmp_path / "two")
    assert block(first) == "127.206.0.0/24"
    assert block(second) != block(first)
    assert first.first_vps_ipv4 & 255 == second.first_vps_ipv4 & 255 == 2


def test_a_restarted_sandbox_keeps_its_block_and_a_removed_ones_block_is_free_again(
    tmp_path: Path, claims: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    same_draws_every_time(monkeypatch)
    first = Sandbox(tmp_path / "one")
    assert Sandbox(tmp_path / "one").first_vps_ipv4 == first.first_vps_ipv4

    shutil.rmtree(tmp_path / "one")
    same_draws_every_time(monkeypatch)
    assert block(Sandbox(tmp_path / "two")) == block(first)


def test_the_claims_of_removed_sandboxes_do_not_pile_up(tmp_path: Path, claims: Path) -> None:
    for n in range(5):
        Sandbox(tmp_path / str(n))
        shutil.rmtree(tmp_path / str(n))
    Sandbox(tmp_path / "last")
    assert len([c for c in claims.iterdir() if not c.name.startswith(".")]) == 1


def test_a_restarted_sandbox_claims_its_block_again_after_the_claims_are_gone(
    tmp_path: Path, claims: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reboot empties /tmp, where the claims are; the sandbox of `make run` keeps its block in .data/."""
    same_draws_every_time(monkeypatch)
    first = Sandbox(tmp_path / "one")
    shutil.rmtree(claims)
    Sandbox(tmp_path / "one")
    same_draws_every_time(monkeypatch)
    assert block(Sandbox(tmp_path / "two")) != block(first)
