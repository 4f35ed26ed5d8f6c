"""Whether the request path runs compiled (setup.py compiles it with mypyc), and whether a
source tree's compiled modules are older than their sources."""

from __future__ import annotations

from pathlib import Path

import prefork.http.loop

PACKAGE = Path(__file__).resolve().parent


def is_compiled() -> bool:
    """True when the request path runs as compiled modules."""
    return not prefork.http.loop.__file__.endswith(".py")


def build() -> str:
    """The request path's build, as logs and benchmarks name it."""
    return "compiled (mypyc)" if is_compiled() else "pure Python"


def stale_modules() -> list[str]:
    """Sources edited after they were compiled, in a source tree (an editable install):
    Python imports the compiled module, so the edit does not run until prefork is
    reinstalled. Empty for an installed package, whose files carry install times."""
    if not (PACKAGE.parent / "setup.py").exists():
        return []
    stale = []
    for binary in sorted(PACKAGE.rglob("*.so")):
        source = binary.with_name(binary.name.split(".", 1)[0] + ".py")
        if source.exists() and source.stat().st_mtime > binary.stat().st_mtime:
            stale.append(str(source.relative_to(PACKAGE.parent)))
    return stale
