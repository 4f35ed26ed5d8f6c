"""The database API for applications.

In a request, `environ["prefork.db"]` is the request's transaction (see transaction.py):

    def app(environ, start_response):
        db = environ["prefork.db"]
        count = db.execute("UPDATE counter SET n = n + 1 RETURNING n").fetchone()[0]
        ...

Anywhere in a worker (a request, a background thread of the app), a connection can also be
borrowed for a transaction of its own, and work that may hit a serialization failure or a
deadlock can be retried:

    from prefork import db
    with db.connection() as conn:        # commit on success, rollback on exception
        conn.execute(...)
    db.retry(lambda conn: transfer(conn, 10))

The process's pool is installed by the worker (or the threaded server) before it serves;
the master has none, so code imported there (preload_app) cannot open a connection that
would cross a fork.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from prefork.db.errors import DatabaseUnavailable, is_unavailable
from prefork.db.pool import Database
from prefork.db.transaction import RETRY_ATTEMPTS, RequestTransaction, run_retrying

T = TypeVar("T")

__all__ = [
    "Database",
    "DatabaseUnavailable",
    "RequestTransaction",
    "connection",
    "current",
    "install",
    "is_unavailable",
    "retry",
]

_current: Database | None = None


def install(database: Database | None) -> None:
    """Make `database` this process's pool (called by the server, not by applications)."""
    global _current
    _current = database


def current() -> Database:
    if _current is None:
        raise RuntimeError(
            "no database in this process: prefork's database is available in "
            "HTTP workers and the threaded server, not in the master"
        )
    return _current


@contextmanager
def connection() -> Iterator[Any]:
    """Borrow a connection for one transaction: committed on success, rolled back on error."""
    with current().connection() as conn:
        yield conn


def retry(work: Callable[[Any], T], attempts: int = RETRY_ATTEMPTS) -> T:
    """Run `work(conn)` in its own transaction, again on serialization failure or deadlock."""
    with current().connection() as conn:
        return run_retrying(conn, work, attempts)
