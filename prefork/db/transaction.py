"""The request's transaction (environ["prefork.db"]) and the retry helper.

A request borrows a connection only when it first uses the database; the transaction then
ends before the response's last byte can reach the client: committed when the application
returned normally with a status below 500, rolled back on an exception or a 5xx.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg.errors

from prefork.db.pool import Database

T = TypeVar("T")

RETRY_ATTEMPTS = 5
RETRY_BASE_DELAY = 0.01  # seconds; doubled on each attempt, with jitter


def is_retryable(exc: BaseException) -> bool:
    """A serialization failure or deadlock: the same transaction may well succeed again."""
    if isinstance(exc, (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)):
        return True
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


def run_retrying(conn: Any, work: Callable[[Any], T], attempts: int) -> T:
    """Run `work(conn)` and commit; on a retryable error roll back and run it again."""
    for attempt in range(1, attempts + 1):
        try:
            result = work(conn)
            conn.commit()
            return result
        except Exception as exc:
            conn.rollback()
            if attempt == attempts or not is_retryable(exc):
                raise
        delay = RETRY_BASE_DELAY * 2 ** (attempt - 1)
        time.sleep(delay * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")


class RequestTransaction:
    """environ["prefork.db"]: the request's connection, borrowed on first use."""

    __slots__ = ("_conn", "_database", "_response")

    def __init__(self, database: Database, response: Any = None) -> None:
        self._database = database
        self._response = response  # the HTTP response of the request, if any
        self._conn: Any = None

    @property
    def status(self) -> int:
        """The response's status once the application has started it, else 0."""
        return self._response.status if self._response is not None else 0

    def connection(self) -> Any:
        """The request's connection (psycopg or sqlite3), in its transaction."""
        if self._conn is None:
            self._conn = self._database.acquire()
        return self._conn

    def execute(self, query: Any, params: Any = None) -> Any:
        """Shortcut for connection().execute(); returns the cursor."""
        if params is None:
            return self.connection().execute(query)
        return self.connection().execute(query, params)

    def retry(self, work: Callable[[Any], T], attempts: int = RETRY_ATTEMPTS) -> T:
        """Run `work(conn)` and commit it, again on serialization failure or deadlock.

        It must hold all of the request's database work, so call it before any other use of
        the request's connection: a retry rolls back everything the transaction did.
        """
        if self._conn is not None:
            raise RuntimeError(
                "retry() must come before any other use of the request's "
                "database connection: a retry rolls back the whole transaction"
            )
        return run_retrying(self.connection(), work, attempts)

    @property
    def used(self) -> bool:
        return self._conn is not None

    def end(self, commit: bool) -> None:
        """Commit or roll back and give the connection back; nothing when unused."""
        conn, self._conn = self._conn, None
        if conn is not None:
            self._database.release(conn, commit)
