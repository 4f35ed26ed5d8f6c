"""One process's database connections: a psycopg pool for PostgreSQL, a small one for SQLite.

No connection crosses a fork: the pool is created on first use in the process that uses it,
and a pool found in a process other than the one that made it (a fork) is abandoned without
being closed (closing would send Terminate on a socket the parent still uses) and replaced.
The master never uses one: it checks and migrates the database with a connection of its own,
closed before the first fork.
"""

from __future__ import annotations

import logging
import os
import queue
import select
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from prefork.db import roles
from prefork.db.errors import DatabaseUnavailable, is_unavailable

log = logging.getLogger("prefork.db")

CLOSE_TIMEOUT = 1.0  # seconds a stopping process waits for its pool's threads
IDLE_WITHIN = 30.0  # seconds of idling after which a pool is back to its minimum ...
IDLE_STEP_MIN = 5.0  # ... give or take one step (so within a minute in all)


def idle_step(size: int) -> float:
    """psycopg_pool's max_idle for a pool that grows to `size` connections: it closes one
    per period in which some connection stayed idle throughout, so such a pool is back to
    its minimum IDLE_WITHIN seconds after it went idle (plus at most one period: the first
    may have begun while it was busy), and one in steady use, with no connection idle for a
    whole period, keeps what it has."""
    return max(IDLE_WITHIN / max(size, 1), IDLE_STEP_MIN)


class Database(ABC):
    """Borrow connections; every borrowed connection ends with commit or rollback."""

    def __init__(self, maxconn: int, timeout: float) -> None:
        self.maxconn = maxconn
        self.timeout = timeout
        self.role = roles.HTTP
        self.bound = 0.0
        self.users = 1

    def bind(self, role: str, bound: float = 0, users: int = 1) -> None:
        """Name the kind of process the connections belong to (see prefork/db/roles.py),
        the seconds its transactions last at most (0: no bound) and how many threads may
        hold a connection at once."""
        self.role = role
        self.bound = bound
        self.users = users

    @abstractmethod
    def acquire(self) -> Any:
        """A connection with no transaction open; raises DatabaseUnavailable."""

    @abstractmethod
    def release(self, conn: Any, commit: bool) -> None:
        """Commit or roll back, then give the connection back."""

    @abstractmethod
    def discard_broken(self) -> None:
        """Drop idle connections that no longer work (after the server went away)."""

    @abstractmethod
    def close(self) -> None:
        """Close this process's connections."""

    @abstractmethod
    def usage(self) -> tuple[int, int]:
        """(connections open, connections lent out) in this process."""

    @contextmanager
    def connection(self) -> Iterator[Any]:
        """Borrow a connection for a transaction: committed on success, rolled back on error."""
        conn = self.acquire()
        try:
            yield conn
        except BaseException:
            self.release(conn, commit=False)
            raise
        self.release(conn, commit=True)

    def ping(self) -> bool:
        try:
            with self.connection() as conn:
                conn.execute("SELECT 1")
            return True
        except Exception as exc:
            if not is_unavailable(exc) and not isinstance(exc, sqlite3.Error):
                raise
            self.discard_broken()
            return False


class PostgresDatabase(Database):
    def __init__(self, conninfo: str, maxconn: int, timeout: float) -> None:
        super().__init__(maxconn, timeout)
        self.conninfo = conninfo
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._pool_pid = 0
        self._lock = threading.Lock()

    def pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        pid = os.getpid()
        if self._pool is not None and self._pool_pid == pid:
            return self._pool
        with self._lock:
            if self._pool is None or self._pool_pid != pid:
                # A pool from another process (before a fork) is dropped, never closed.
                self._pool = ConnectionPool(
                    roles.role_conninfo(self.conninfo, self.role),
                    min_size=0,
                    max_size=self.maxconn,
                    timeout=self.timeout,
                    # Give up a failed reconnection quickly: the next request tries again,
                    # so service resumes as soon as the server is back.
                    reconnect_timeout=self.timeout,
                    num_workers=1,
                    configure=lambda conn: roles.prepare(conn, self.bound),
                    max_idle=idle_step(min(self.users, self.maxconn)),
                    name=f"prefork-{pid}",
                    open=True,
                )
                self._pool_pid = pid
        return self._pool

    def usage(self) -> tuple[int, int]:
        if self._pool is None or self._pool_pid != os.getpid():
            return 0, 0  # no pool opened in this process yet
        stats = self._pool.get_stats()
        size = stats.get("pool_size", 0)
        return size, size - stats.get("pool_available", 0)

    def acquire(self) -> psycopg.Connection[Any]:
        pool = self.pool()
        try:
            for _ in range(self.maxconn + 1):
                conn = pool.getconn()
                if not _stale(conn):
                    return conn
                conn.close()
                pool.putconn(conn)  # the pool drops a closed connection
        except PoolTimeout:
            raise DatabaseUnavailable(f"no database connection within {self.timeout:g} s") from None
        raise DatabaseUnavailable("every pooled connection was lost")

    def release(self, conn: psycopg.Connection[Any], commit: bool) -> None:
        try:
            if not conn.closed and not conn.broken:
                conn.commit() if commit else conn.rollback()
        except psycopg.Error:
            if commit:
                raise
        finally:
            self.pool().putconn(conn)

    def discard_broken(self) -> None:
        if self._pool is not None and self._pool_pid == os.getpid():
            self._pool.check()

    def close(self) -> None:
        if self._pool is not None and self._pool_pid == os.getpid():
            self._pool.close(timeout=CLOSE_TIMEOUT)
        self._pool = None


def _stale(conn: psycopg.Connection[Any]) -> bool:
    """True for a pooled connection the server has closed since it was last used.

    An idle connection has nothing to read; when it has, the server sent an error (shutdown,
    restart) or closed it. One poll system call, so checking every checkout costs no round
    trip; only a readable connection is tested with a query.
    """
    if conn.closed or conn.broken:
        return True
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    if not poller.poll(0):
        return False
    try:
        ConnectionPool.check_connection(conn)
    except psycopg.Error:
        return True
    return False


class SQLiteDatabase(Database):
    """Threaded mode only: up to `maxconn` connections shared by the server's threads."""

    def __init__(self, path: str, maxconn: int, timeout: float) -> None:
        super().__init__(maxconn, timeout)
        self.path = path
        self._idle: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._opened = 0
        self._lock = threading.Lock()

    def acquire(self) -> sqlite3.Connection:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._opened < self.maxconn:
                self._opened += 1
                return self._open()
        try:
            return self._idle.get(timeout=self.timeout)
        except queue.Empty:
            raise DatabaseUnavailable(f"no database connection within {self.timeout:g} s") from None

    def usage(self) -> tuple[int, int]:
        with self._lock:
            return self._opened, self._opened - self._idle.qsize()

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.timeout, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
        return conn

    def release(self, conn: sqlite3.Connection, commit: bool) -> None:
        try:
            conn.commit() if commit else conn.rollback()
        finally:
            self._idle.put(conn)

    def discard_broken(self) -> None:
        """A local file does not go away like a server: nothing to drop."""

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return
