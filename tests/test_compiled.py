"""The request path compiled by mypyc (setup.py), and the same sources uncompiled."""

from __future__ import annotations

import importlib
import os
import runpy
import shutil
import time
from pathlib import Path

import pytest

from prefork import compiled
from tests.conftest import ROOT, start_server

COMPILED: list[str] = runpy.run_path(str(ROOT / "setup.py"))["COMPILED"]


@pytest.mark.skipif(bool(os.environ.get("PREFORK_PURE_PYTHON")),
                    reason="installed uncompiled on purpose")
def test_every_listed_module_runs_compiled() -> None:
    """An install that silently fell back to the sources would lose the speed unseen."""
    assert compiled.is_compiled()
    for path in COMPILED:
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        assert module.__file__ is not None and module.__file__.endswith(".so"), path


def test_the_same_sources_serve_uncompiled(tmp_path: Path) -> None:
    """PREFORK_PURE_PYTHON installs run the sources as they are: a worker serves from a
    copy of the package without its compiled modules."""
    shutil.copytree(ROOT / "prefork", tmp_path / "prefork",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    server = start_server(tmp_path, "--workers", "1", "--max-cron-threads", "0",
                          "--app", "tests.apps.testapp:app", cwd=tmp_path,
                          env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"})
    try:
        assert "request path: pure Python" in server.log()
        assert server.get("/echo")[0] == 200
    finally:
        assert server.stop() == 0


def test_a_source_edited_after_compiling_is_reported(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "prefork"
    (package / "http").mkdir(parents=True)
    binary = package / "http" / "loop.cpython-311-x86_64-linux-gnu.so"
    source = package / "http" / "loop.py"
    binary.write_bytes(b"")
    source.write_text("")
    then = time.time() - 60
    os.utime(binary, (then, then))
    monkeypatch.setattr(compiled, "PACKAGE", package)
    assert compiled.stale_modules() == [], "an installed package: no source tree"
    (tmp_path / "setup.py").write_text("")
    assert compiled.stale_modules() == ["prefork/http/loop.py"]
    os.utime(source, (then - 60, then - 60))
    assert compiled.stale_modules() == []
