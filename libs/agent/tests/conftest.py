import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from letsbe_fakes.docker_engine import DockerEngineFake


@pytest.fixture
def docker_fake() -> Iterator[DockerEngineFake]:
    d = Path(tempfile.mkdtemp(prefix="dk"))  # unix socket paths must stay short (~100 bytes)
    with DockerEngineFake(d / "d.sock", health_delay=0.1) as fake:
        yield fake
