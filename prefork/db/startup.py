"""Before serving: start the embedded server if asked, wait for the database, migrate.

Runs in the master (or the threaded server) before anything forks. Its one connection is
closed before it returns, so no child inherits a database connection.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from dataclasses import dataclass

import psycopg

from prefork.config import Settings
from prefork.db import roles
from prefork.db.capacity import capacity_warning, connection_budget, server_limits
from prefork.db.embedded import EmbeddedError, EmbeddedPostgres
from prefork.db.errors import one_line
from prefork.db.hosts import HostInfo, describe, leave, register
from prefork.db.pool import Database, PostgresDatabase, SQLiteDatabase
from prefork.db.schema import SchemaError, migrate_postgres, migrate_sqlite
from prefork.db.target import EMBEDDED, SQLITE, Target, postgres_conninfo, resolve_target

log = logging.getLogger("prefork.db")

RETRY_INTERVAL = 0.5
LEAVE_TIMEOUT = 2  # seconds a stopping server gives the database to delete its row
# Errors that waiting will not cure: fail at once instead of after db_connect_timeout.
_PERMANENT = (
    "does not exist",
    "authentication failed",
    "no password supplied",
    "permission denied",
)


class DatabaseStartError(Exception):
    """The database could not be reached or prepared; the message says which and why."""


@dataclass
class DatabaseRuntime:
    """The database this server uses, and the embedded server it owns, if any."""

    target: Target
    embedded: EmbeddedPostgres | None = None
    host: HostInfo | None = None  # this server's row in the host registry, once written

    def database(self, settings: Settings) -> Database:
        """A process's connection pool (opened on first use, in the process that uses it)."""
        if self.target.kind == SQLITE:
            return SQLiteDatabase(self.target.path, settings.db_maxconn, settings.db_pool_timeout)
        return PostgresDatabase(self.target.conninfo, settings.db_maxconn, settings.db_pool_timeout)

    def leave_cluster(self) -> None:
        """Delete this server's registry row (a graceful stop); a database that is away
        leaves it to go stale."""
        if self.host is None:
            return
        try:
            with roles.connect(
                self.target.conninfo, roles.MASTER, autocommit=True, connect_timeout=LEAVE_TIMEOUT
            ) as conn:
                leave(conn, self.host)
        except psycopg.Error as exc:
            log.debug("could not leave the host registry: %s", one_line(exc))

    def close(self, *, keep_embedded: bool = False) -> None:
        """Stop the embedded server, unless another process takes it over (upgrade)."""
        if self.embedded is not None and not keep_embedded:
            self.embedded.stop()


def start_database(settings: Settings, *, as_server: bool = False) -> DatabaseRuntime:
    """The database ready for use; `as_server`: this is a server, which joins the host
    registry."""
    target = resolve_target(settings)
    if target.kind == SQLITE:
        try:
            migrate_sqlite(target.path)
        except (sqlite3.Error, OSError, SchemaError) as exc:
            raise DatabaseStartError(f"cannot use {target.describe()}: {exc}") from exc
        log.info("database: %s", target.describe())
        return DatabaseRuntime(target)
    runtime = DatabaseRuntime(target)
    try:
        if target.kind == EMBEDDED:
            runtime = _start_embedded(settings)
        _prepare_postgres(settings, runtime, as_server)
    except BaseException:
        runtime.close()
        raise
    log.info("database: %s", runtime.target.describe())
    return runtime


def _start_embedded(settings: Settings) -> DatabaseRuntime:
    embedded = EmbeddedPostgres(settings.data_dir)
    try:
        uri = embedded.start()
        runtime = DatabaseRuntime(Target(EMBEDDED, postgres_conninfo(uri)), embedded)
        embedded.ensure_max_connections(runtime.target.conninfo, connection_budget(settings).total)
    except (EmbeddedError, psycopg.Error, OSError) as exc:
        embedded.stop()
        raise DatabaseStartError(str(exc)) from exc
    return runtime


def _prepare_postgres(settings: Settings, runtime: DatabaseRuntime, as_server: bool) -> None:
    target = runtime.target
    role = roles.MASTER if as_server else roles.CLI
    with wait_for_postgres(target, settings.db_connect_timeout, role) as conn:
        try:
            migrate_postgres(conn)
        except (psycopg.Error, SchemaError) as exc:
            raise DatabaseStartError(
                f"cannot prepare the prefork schema in {target.describe()}: {exc}"
            ) from exc
        if runtime.embedded is None:
            warning = capacity_warning(connection_budget(settings), *server_limits(conn))
            if warning:
                log.warning("%s", warning)
        if as_server:
            runtime.host = _join(conn, settings)


def _join(conn: psycopg.Connection[tuple[object, ...]], settings: Settings) -> HostInfo:
    """Write this server's registry row, so that the cluster knows it from the start (its
    realtime process keeps it fresh and says what is wrong with the cluster)."""
    me = describe(settings, os.getpid())
    register(conn, me)
    return me


def wait_for_postgres(
    target: Target, timeout: float, role: str = roles.MASTER
) -> psycopg.Connection[tuple[object, ...]]:
    """Connect, retrying until `timeout` seconds have passed; raises DatabaseStartError."""
    deadline = time.monotonic() + timeout
    announced = False
    while True:
        try:
            return roles.connect(target.conninfo, role, autocommit=True)
        except psycopg.OperationalError as exc:
            reason = one_line(exc)
            permanent = any(word in reason for word in _PERMANENT)
            if permanent or time.monotonic() >= deadline:
                waited = "" if permanent else f" (waited {timeout:g} s)"
                raise DatabaseStartError(
                    f"cannot connect to {target.describe()}{waited}: {reason}"
                ) from None
            if not announced:
                log.warning("waiting up to %g s for %s: %s", timeout, target.describe(), reason)
                announced = True
        time.sleep(min(RETRY_INTERVAL, max(0.0, deadline - time.monotonic())))
