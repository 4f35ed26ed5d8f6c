"""Unit tests start no process and open no database connection: they run in seconds on a
machine with neither PostgreSQL nor the tools the integration tests drive. A test that
needs either belongs in tests/integration, and fails here saying so."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import psycopg
import pytest


class IntegrationOnly(AssertionError):
    """Raised by what a unit test may not do."""


def _refuse(what: str) -> object:
    def refuse(*args: object, **kwargs: object) -> None:
        raise IntegrationOnly(f"a unit test may not {what}: move it to tests/integration")

    return refuse


@pytest.fixture(autouse=True)
def _no_processes_no_database(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse("start a process"))
    for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "execv", "execve"):
        monkeypatch.setattr(os, name, _refuse("start a process"))
    monkeypatch.setattr(psycopg, "connect", _refuse("connect to a database"))
    monkeypatch.setattr(psycopg.Connection, "connect", _refuse("connect to a database"))
    monkeypatch.delenv("PREFORK_DB_URI", raising=False)
    yield
