"""A claimed job's lease: its lock transaction, which PostgreSQL ends when it is not renewed.

A cron worker holds a job by keeping the transaction that locked the job's row open (see
store.py). The lock connection sets `idle_in_transaction_session_timeout` to the lease
length, and a renewal thread runs a statement on it every third of that while the job runs:
a healthy worker keeps the lock however long the job takes (even without a time limit); a
frozen, partitioned or vanished host stops renewing and PostgreSQL ends its session after the
lease length, which frees the row for another worker on any host.

    lease = Lease(lock_conn, lease_seconds(limit), guard)
    lease.start()
    ...                          # the job runs on another connection
    with guard:
        lost = lease.confirm()   # "" while held: the job's transaction may commit
    lease.stop()
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from prefork.db import roles
from prefork.db.errors import one_line

log = logging.getLogger("prefork.cron")

# Longer than the master's grace (servers/supervision.py CRON_GRACE, 5 s) before it kills a cron
# worker past its limit: on a live host the kill, which ends the lease at once, comes first.
GRACE = 10  # seconds past limit_time_real_cron before PostgreSQL ends a lease
UNLIMITED_LEASE = 60  # seconds: the lease of a job without a time limit, renewed while it runs
RENEWALS_PER_LEASE = 3  # a renewal may be late twice before the lease is lost


def lease_seconds(limit: int) -> int:
    """The lease length for a job limit (limit_time_real_cron as resolved; 0 = none)."""
    return limit + GRACE if limit else UNLIMITED_LEASE


def set_session_timeouts(conn: Any, *, idle_in_transaction: float, statement: float = 0) -> None:
    """Session-level timeouts in seconds (0 = none), kept for the connection's life."""
    roles.apply(
        conn,
        {
            "idle_in_transaction_session_timeout": roles.millis(idle_in_transaction),
            "statement_timeout": roles.millis(statement),
        },
    )


def bound_idle_in_transaction(conn: Any, seconds: float) -> None:
    """For the rest of the current transaction only: PostgreSQL ends the session when the
    transaction waits longer than `seconds` for its client."""
    conn.execute(
        "SELECT set_config('idle_in_transaction_session_timeout', %s, true)",
        (roles.millis(seconds),),
    )


class Lease:
    """Renews one claim's lock transaction until stop(). `guard` serialises the renewals
    with whatever else ends that transaction (the runner's finish, its timeout timer): a
    statement after the commit would silently open a new transaction on the connection."""

    def __init__(self, conn: Any, length: float, guard: threading.Lock) -> None:
        self.conn = conn
        self.length = length
        self.guard = guard
        self.lost = ""  # why the lease was lost; empty while held
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="cron-lease", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Idempotent; the caller may hold the guard (the thread is not waited for)."""
        self._stopped.set()

    def confirm(self) -> str:
        """Renew the lease now: "" when it is still held, else why not. Call with the guard."""
        if not self.lost:
            self.lost = self._check()
        return self.lost

    def _check(self) -> str:
        if self.conn.closed or self.conn.info.transaction_status != TransactionStatus.INTRANS:
            return "its lock transaction is no longer open"
        try:
            self.conn.execute("SELECT 1")
        except psycopg.Error as exc:
            return f"its lock connection failed: {one_line(exc)}"
        return ""

    def _renew(self) -> None:
        while not self._stopped.wait(self.length / RENEWALS_PER_LEASE):
            with self.guard:
                if self._stopped.is_set():
                    return
                if self.confirm():
                    log.warning(
                        "cron lease lost while its job runs (%s); the job will be rolled back",
                        self.lost,
                    )
                    return
