"""The request path compiled by mypyc (setup.py): every listed module runs compiled, and a
source edited after compiling is reported."""

from __future__ import annotations

import importlib
import os
import runpy
import time
from pathlib import Path

import pytest

from prefork import compiled

ROOT = Path(__file__).resolve().parents[2]
COMPILED: list[str] = runpy.run_path(str(ROOT / "setup.py"))["COMPILED"]


@pytest.mark.skipif(
    bool(os.environ.get("PREFORK_PURE_PYTHON")), reason="installed uncompiled on purpose"
)
def test_every_listed_module_runs_compiled() -> None:
    """An install that silently fell back to the sources would lose the speed unseen."""
    assert compiled.is_compiled()
    for path in COMPILED:
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        assert module.__file__ is not None and module.__file__.endswith(".so"), path


def test_a_source_edited_after_compiling_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
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
