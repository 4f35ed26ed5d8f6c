"""One SELECT per request through a connection pool, written for each server.

- `prefork_app`: prefork's request transaction (`environ["prefork.db"]`), which borrows a
  connection from the worker's pool on first use and ends the transaction before replying.
- `gunicorn_app`: what a gunicorn user writes: a psycopg_pool pool per worker process,
  created after the fork (on first request), `with pool.connection()` around the query.
Both answer with the query's result; both commit (the pool's context manager does).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from http_hello import DSN
from psycopg_pool import ConnectionPool

QUERY = "SELECT 1"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", "1")]


def prefork_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    row = environ["prefork.db"].execute(QUERY).fetchone()
    start_response("200 OK", HEADERS)
    return [str(row[0]).encode()]


_pool: ConnectionPool | None = None
_pool_pid = 0


def _gunicorn_pool() -> ConnectionPool:
    global _pool, _pool_pid
    if _pool is None or _pool_pid != os.getpid():
        _pool = ConnectionPool(DSN, min_size=1, max_size=4, open=True)
        _pool_pid = os.getpid()
    return _pool


def gunicorn_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    with _gunicorn_pool().connection() as conn:
        row = conn.execute(QUERY).fetchone()
    start_response("200 OK", HEADERS)
    return [str(row[0]).encode()]
