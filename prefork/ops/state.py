"""The master's state file: what `prefork status` and the dashboard read.

The master writes it every second through prefork.servers.observation, its only
writer; this module is its only reader. Written atomically (temporary file, then rename)
under data_dir/run, one file per HTTP port, so several prefork instances can share a
data_dir. No database is needed to read it.
"""

from __future__ import annotations

import json
import os
import time
from typing import NotRequired, TypedDict, cast

from prefork.config import Settings
from prefork.datadir import write_private

STALE_AFTER = 5.0  # seconds: the master rewrites the file every second


class ProcessRow(TypedDict):
    """The master or one of its processes, as `prefork status` lists it."""

    pid: int
    role: str  # "master", "http worker #1", "cron worker #1", "realtime process"
    rss: int  # bytes
    cpu: float  # percent since the previous row
    requests: int
    started_at: float  # epoch seconds
    request: str  # the request line running, or empty
    request_seconds: float
    state: str  # running, draining (master); booting, ready, retiring, stopping
    generation: NotRequired[int]  # the workers': a HUP starts a new one
    sending_bytes: NotRequired[int]  # bytes queued to slow readers
    sending_clients: NotRequired[int]


class ExitRow(TypedDict):
    """One of the last exits (prefork.servers.exits.ExitRecord)."""

    pid: int
    role: str
    reason: str
    detail: str
    request: str
    error: str
    at: float


class MasterState(TypedDict):
    """The whole file. Threaded mode writes none; its dashboard shows the same keys for
    its one process, without those marked NotRequired."""

    version: str
    mode: str  # multi-processing, threaded
    master: ProcessRow
    processes: list[ProcessRow]
    exits: list[ExitRow]
    alerts: list[dict[str, object]]  # prefork.servers.health.Alert, and the database's
    memory_history: dict[str, list[tuple[int, int]]]  # role: (epoch second, RSS)
    config: NotRequired[str | None]
    target_workers: NotRequired[int]
    listeners: NotRequired[list[str]]
    database: NotRequired[dict[str, object]]  # the embedded PostgreSQL's supervisor


def state_path(settings: Settings) -> str:
    return os.path.join(settings.data_dir, "run", f"prefork-{settings.http_port}.json")


def write_state(path: str, state: MasterState) -> None:
    write_private(path, json.dumps(state).encode())  # it holds request lines: 0600


def read_state(path: str) -> MasterState | None:
    """The state of a live master, or None when there is none (no file, stale, dead pid)."""
    try:
        with open(path, encoding="utf-8") as handle:
            state = cast(MasterState, json.load(handle))
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
