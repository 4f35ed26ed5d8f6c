"""The database of a command-line tool (`prefork cron`, `prefork bus`): PostgreSQL only,
the embedded server started for the command and stopped after it unless it was running."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from prefork.config import Settings
from prefork.db.startup import DatabaseRuntime, DatabaseStartError, start_database
from prefork.db.target import SQLITE, resolve_target


class CommandError(Exception):
    """Printed as `prefork: error: ...`, exit status 2."""


@contextmanager
def command_database(settings: Settings, needs: str) -> Iterator[DatabaseRuntime]:
    if resolve_target(settings).kind == SQLITE:
        raise CommandError(f"{needs} need PostgreSQL (db_uri names SQLite)")
    was_running = os.path.exists(os.path.join(settings.data_dir, "postgres", "postmaster.pid"))
    try:
        runtime = start_database(settings)
    except DatabaseStartError as exc:
        raise CommandError(str(exc)) from None
    try:
        yield runtime
    finally:
        runtime.close(keep_embedded=was_running)
