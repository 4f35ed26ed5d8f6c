"""What every test run checks first, unit and integration alike."""

from __future__ import annotations

import pytest


def pytest_sessionstart(session: pytest.Session) -> None:
    """Python imports a compiled module before its source: an edit made since the last
    install would not be what the tests run."""
    from prefork.compiled import stale_modules

    stale = stale_modules()
    if stale:
        pytest.exit(f"changed since they were compiled: {', '.join(stale)}; install again "
                    "(pip install -e .) before testing", returncode=2)
