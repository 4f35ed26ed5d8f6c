"""The request path compiled by mypyc (setup.py), and the same sources uncompiled."""

from __future__ import annotations

import importlib
import os
import runpy
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prefork import compiled
from tests.conftest import ROOT, Server

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
    log_path = tmp_path / "server.log"
    command = [sys.executable, "-m", "prefork", "run", "--http-interface", "127.0.0.1",
               "-p", "0", "--gevent-port", "0", "--data-dir", str(tmp_path / "data"),
               "--workers", "1", "--max-cron-threads", "0",
               "--app", "tests.apps.testapp:app"]
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    env.pop("PREFORK_CONFIG", None)
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                cwd=tmp_path, env=env)
    server = Server(proc, log_path)
    try:
        match = server.wait_log(r"HTTP service running on (\S+):(\d+)")
        server.port = int(match.group(2))
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
