"""The request path compiled by mypyc (setup.py), and the same sources uncompiled."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, start_server

# Every test here starts `prefork run`: it finds the test database through PREFORK_DB_URI.
pytestmark = pytest.mark.usefixtures("database_uri")


def test_the_same_sources_serve_uncompiled(tmp_path: Path) -> None:
    """PREFORK_PURE_PYTHON installs run the sources as they are: a worker serves from a
    copy of the package without its compiled modules."""
    shutil.copytree(
        ROOT / "prefork", tmp_path / "prefork", ignore=shutil.ignore_patterns("*.so", "__pycache__")
    )
    server = start_server(
        tmp_path,
        "--workers",
        "1",
        "--max-cron-threads",
        "0",
        "--app",
        "tests.apps.testapp:app",
        cwd=tmp_path,
        env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"},
    )
    try:
        assert "request path: pure Python" in server.log()
        assert server.get("/echo")[0] == 200
    finally:
        assert server.stop() == 0
