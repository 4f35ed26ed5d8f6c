"""prefork's own tables: created and migrated at start, idempotently, with a version number.

PostgreSQL: everything lives in the `prefork` schema; the migration runs in one transaction
under a transaction-level advisory lock, so masters starting at once on one database (several
hosts, or an upgrade) apply each step exactly once and the others find the work done.
SQLite (threaded mode, one process): the same steps with a `prefork_` table prefix instead of
a schema, under BEGIN IMMEDIATE.

A step is appended, never edited: a database records the last version it has.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

log = logging.getLogger("prefork.db")

ADVISORY_LOCK_KEY = 0x70726566_6f726b  # "prefork"
# (version, what it adds, PostgreSQL statements, SQLite statements)
STEPS: list[tuple[int, str, tuple[str, ...], tuple[str, ...]]] = [
    (1, "schema version history", (), ()),
]
VERSION = STEPS[-1][0]


class SchemaError(Exception):
    """The database holds a schema this prefork cannot use."""


def migrate_postgres(conn: Any) -> tuple[int, int]:
    """Bring the prefork schema to VERSION; returns (version before, version after)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
        conn.execute("CREATE SCHEMA IF NOT EXISTS prefork")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS prefork.schema_version ("
            " version integer PRIMARY KEY,"
            " description text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        before = _current(conn.execute("SELECT max(version) FROM prefork.schema_version"))
        for version, description, statements, _ in _pending(before):
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO prefork.schema_version (version, description) "
                         "VALUES (%s, %s)", (version, description))
    _log_result(before)
    return before, max(before, VERSION)


def migrate_sqlite(path: str) -> tuple[int, int]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS prefork_schema_version ("
            " version integer PRIMARY KEY, description text NOT NULL,"
            " applied_at text NOT NULL DEFAULT CURRENT_TIMESTAMP)"
        )
        before = _current(conn.execute("SELECT max(version) FROM prefork_schema_version"))
        for version, description, _, statements in _pending(before):
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO prefork_schema_version (version, description) "
                         "VALUES (?, ?)", (version, description))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()
    _log_result(before)
    return before, max(before, VERSION)


def _current(cursor: Any) -> int:
    row = cursor.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _pending(before: int) -> list[tuple[int, str, tuple[str, ...], tuple[str, ...]]]:
    if before > VERSION:
        raise SchemaError(f"the database's prefork schema is at version {before}, newer than "
                          f"this prefork ({VERSION}); upgrade prefork")
    return [step for step in STEPS if step[0] > before]


def _log_result(before: int) -> None:
    if before < VERSION:
        log.info("prefork schema migrated from version %d to %d", before, VERSION)
    else:
        log.debug("prefork schema is at version %d", VERSION)
