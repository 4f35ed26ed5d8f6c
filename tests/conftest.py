"""What every test run checks first, and the fixtures unit and integration tests share."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def pytest_sessionstart(session: pytest.Session) -> None:
    """Python imports a compiled module before its source: an edit made since the last
    install would not be what the tests run."""
    from prefork.compiled import stale_modules

    stale = stale_modules()
    if stale:
        pytest.exit(
            f"changed since they were compiled: {', '.join(stale)}; install again "
            "(pip install -e .) before testing",
            returncode=2,
        )


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory others can search (pytest's tmp_path is 0700, which is refused)."""
    path = Path(tempfile.mkdtemp(prefix="prefork-root-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
