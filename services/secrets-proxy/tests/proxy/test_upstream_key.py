"""Which upstream key the proxy presents: the rendered one, or the one a rotation fetched for it since."""

from __future__ import annotations

from pathlib import Path

from letsbe_agent.files import write_json
from letsbe_secrets_proxy.proxy.upstream_key import KEY_FILE, _digest, current_key


def test_a_rotated_key_outlives_a_restart_and_a_newer_rendered_key_wins(tmp_path: Path) -> None:
    assert current_key(tmp_path, "lbl_rendered") == "lbl_rendered"  # nothing rotated yet
    write_json(tmp_path / KEY_FILE, {"replaces": _digest("lbl_rendered"), "key": "lbl_rotated"})
    assert current_key(tmp_path, "lbl_rendered") == "lbl_rotated"  # a restart keeps the rotated key
    # The provisioner re-ran step 10: the hub issued a newer key and it was rendered; the kept one is older.
    assert current_key(tmp_path, "lbl_rerendered") == "lbl_rerendered"
    assert current_key(None, "lbl_rendered") == "lbl_rendered"
