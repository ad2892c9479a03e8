from collections.abc import Iterator
from pathlib import Path

import pytest

from letsbe_fakes.docker_engine import DockerEngineFake


@pytest.fixture
def docker_fake(tmp_path: Path) -> Iterator[DockerEngineFake]:
    # unix socket paths are limited to ~100 bytes: keep it short
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="dk"))
    with DockerEngineFake(d / "d.sock", health_delay=0.1) as fake:
        yield fake
