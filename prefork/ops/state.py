"""The master's state file: what `prefork status` (and later the dashboard) reads.

Written atomically (temporary file, then rename) under data_dir/run, one file per HTTP port,
so several prefork instances can share a data_dir. No database is needed to read it.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from prefork.config import Settings
from prefork.datadir import write_private

STALE_AFTER = 5.0  # seconds: the master rewrites the file every second


def state_path(settings: Settings) -> str:
    return os.path.join(settings.data_dir, "run", f"prefork-{settings.http_port}.json")


def write_state(path: str, state: dict[str, Any]) -> None:
    write_private(path, json.dumps(state).encode())  # it holds request lines: 0600


def read_state(path: str) -> dict[str, Any] | None:
    """The state of a live master, or None when there is none (no file, stale, dead pid)."""
    try:
        with open(path, encoding="utf-8") as handle:
            state: dict[str, Any] = json.load(handle)
        age = time.time() - os.stat(path).st_mtime
    except (OSError, ValueError):
        return None
    if age > STALE_AFTER or not _alive(int(state["master"]["pid"])):
        return None
    return state


def remove_state(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
