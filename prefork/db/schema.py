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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

log = logging.getLogger("prefork.db")

ADVISORY_LOCK_KEY = 0x70726566_6F726B  # "prefork"


class Step(NamedTuple):
    """One migration: what it adds, in each dialect (SQLite names use a prefork_ prefix)."""

    version: int
    description: str
    postgres: tuple[str, ...]
    sqlite: tuple[str, ...]


STEPS = [
    Step(1, "schema version history", (), ()),
    Step(
        2,
        "scheduled jobs and their runs",
        (
            """CREATE TABLE prefork.cron_job (
            name text PRIMARY KEY,
            schedule text NOT NULL,
            priority integer NOT NULL DEFAULT 10,
            active boolean NOT NULL DEFAULT true,
            declared boolean NOT NULL DEFAULT true,
            next_run timestamptz NOT NULL,
            last_run timestamptz,
            last_status text,
            last_duration double precision,
            last_error text,
            failures integer NOT NULL DEFAULT 0,
            first_failure timestamptz,
            runs bigint NOT NULL DEFAULT 0)""",
            "CREATE INDEX cron_job_due ON prefork.cron_job (next_run) WHERE active",
            """CREATE TABLE prefork.cron_run (
            id bigserial PRIMARY KEY,
            job text NOT NULL,
            slot timestamptz NOT NULL,
            worker text NOT NULL,
            started_at timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz,
            status text,
            duration double precision,
            progress text,
            error text)""",
            "CREATE INDEX cron_run_job_slot ON prefork.cron_run (job, slot)",
        ),
        (),
    ),
    # `pk` orders writes; `id` is the delivery order, given by the realtime process after
    # commit (see prefork/bus/store.py), so that ids become visible in increasing order.
    Step(
        3,
        "realtime bus messages",
        (
            "CREATE SEQUENCE prefork.bus_delivery",
            """CREATE TABLE prefork.bus_message (
            pk bigserial PRIMARY KEY,
            id bigint UNIQUE,
            channel text NOT NULL,
            message text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now())""",
            "CREATE INDEX bus_message_unsequenced ON prefork.bus_message (pk) WHERE id IS NULL",
            "CREATE INDEX bus_message_created ON prefork.bus_message (created_at)",
        ),
        (),
    ),
    # Attempts left unfinished (killed workers, before or after this step) are closed as lost
    # when their job is next claimed (prefork/cron/store.py), not here: a worker of the
    # previous version may be running one while this migrates.
    Step(
        4,
        "every cron attempt ends with a status",
        (
            "ALTER TABLE prefork.cron_run ADD CONSTRAINT cron_run_status "
            "CHECK (status IN ('ok', 'failed', 'timeout', 'lost'))",
            "CREATE INDEX cron_run_unfinished ON prefork.cron_run (job) WHERE finished_at IS NULL",
        ),
        (),
    ),
    Step(
        5,
        "the host registry",
        (
            """CREATE TABLE prefork.host (
            host text NOT NULL,
            http_port integer NOT NULL,
            pid integer NOT NULL,
            version text NOT NULL,
            mode text NOT NULL,
            gevent_port integer NOT NULL,
            session_store text NOT NULL,
            session_location text NOT NULL,
            session_key text NOT NULL,
            connections integer NOT NULL,
            started_at timestamptz NOT NULL DEFAULT now(),
            heartbeat timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (host, http_port))""",
        ),
        (),
    ),
]
VERSION = STEPS[-1].version


class SchemaError(Exception):
    """The database holds a schema this prefork cannot use."""


@dataclass(frozen=True)
class _Dialect:
    history: str  # the version history table
    created_at: str  # its timestamp column type and default
    placeholder: str
    statements: Callable[[Step], tuple[str, ...]]


_POSTGRES = _Dialect(
    "prefork.schema_version", "timestamptz NOT NULL DEFAULT now()", "%s", lambda step: step.postgres
)
_SQLITE = _Dialect(
    "prefork_schema_version",
    "text NOT NULL DEFAULT CURRENT_TIMESTAMP",
    "?",
    lambda step: step.sqlite,
)


def migrate_postgres(conn: Any) -> tuple[int, int]:
    """Bring the prefork schema to VERSION; returns (version before, version after)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
        conn.execute("CREATE SCHEMA IF NOT EXISTS prefork")
        before = _apply(conn, _POSTGRES)
    _log_result(before)
    return before, max(before, VERSION)


def migrate_sqlite(path: str) -> tuple[int, int]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        before = _apply(conn, _SQLITE)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()
    _log_result(before)
    return before, max(before, VERSION)


def _apply(conn: Any, dialect: _Dialect) -> int:
    """Run the steps the database lacks, inside the caller's transaction; the version before."""
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {dialect.history} (version integer PRIMARY KEY, "
        f"description text NOT NULL, applied_at {dialect.created_at})"
    )
    before = _current(conn.execute(f"SELECT max(version) FROM {dialect.history}"))
    mark = (
        f"INSERT INTO {dialect.history} (version, description) "
        f"VALUES ({dialect.placeholder}, {dialect.placeholder})"
    )
    for step in _pending(before):
        for statement in dialect.statements(step):
            conn.execute(statement)
        conn.execute(mark, (step.version, step.description))
    return before


def _current(cursor: Any) -> int:
    row = cursor.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _pending(before: int) -> list[Step]:
    if before > VERSION:
        raise SchemaError(
            f"the database's prefork schema is at version {before}, newer than "
            f"this prefork ({VERSION}); upgrade prefork"
        )
    return [step for step in STEPS if step.version > before]


def _log_result(before: int) -> None:
    if before < VERSION:
        log.info("prefork schema migrated from version %d to %d", before, VERSION)
    else:
        log.debug("prefork schema is at version %d", VERSION)
