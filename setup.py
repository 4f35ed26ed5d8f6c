"""Compiles the request path with mypyc when prefork is installed.

Every request runs through the modules listed here; compiled, they cost about two thirds
of the interpreter's instructions (BENCHMARKS.md). The same sources run uncompiled with
PREFORK_PURE_PYTHON=1 set at install time (for a machine without a C compiler). The rest
of the metadata is in pyproject.toml.
"""

from __future__ import annotations

import os

from setuptools import setup

COMPILED = [
    "prefork/access_log.py",
    "prefork/db/transaction.py",
    "prefork/http/body.py",
    "prefork/http/connection.py",
    "prefork/http/errors.py",
    "prefork/http/grammar.py",
    "prefork/http/host.py",
    "prefork/http/loop.py",
    "prefork/http/pacing.py",
    "prefork/http/parser.py",
    "prefork/http/poller.py",
    "prefork/http/request.py",
    "prefork/http/responses.py",
    "prefork/metrics.py",
    "prefork/sessions/binder.py",
    "prefork/workers/http.py",
    "prefork/workers/limits.py",
    "prefork/workers/scoreboard.py",
    "prefork/wsgi/database.py",
    "prefork/wsgi/environ.py",
    "prefork/wsgi/file_wrapper.py",
    "prefork/wsgi/handler.py",
    "prefork/wsgi/routes.py",
]


def extensions() -> list[object]:
    if os.environ.get("PREFORK_PURE_PYTHON"):
        return []
    from mypyc.build import mypycify

    # The build environment holds setuptools and mypy, not prefork's dependencies: their
    # types are unknown there (Any), which compiles to the same generic calls. The type
    # checking itself is CI's job (mypy --strict with everything installed).
    flags = ["--config-file=", "--ignore-missing-imports"]
    return list(mypycify([*flags, *COMPILED], opt_level="3"))


if __name__ == "__main__":  # as setuptools runs it; tests read COMPILED
    setup(ext_modules=extensions())
