"""Scheduled jobs: declare them with @cron; cron workers run each due slot once.

    from prefork.cron import cron

    @cron("*/5 * * * *")
    def purge_sessions(ctx):
        ctx.conn.execute("DELETE FROM sessions WHERE expires < now()")
        ctx.log.info("purged")

    @cron(every="10m", name="reports.refresh", priority=5)
    def refresh(ctx):
        ...

The modules holding the jobs are named by the `cron_jobs` option (else the application's
module is imported). `trigger(name)` makes a job due now from application code.
"""

from __future__ import annotations

from prefork import db
from prefork.cron.registry import REGISTRY, Job, cron
from prefork.cron.runner import JobContext
from prefork.cron.store import trigger as _trigger

__all__ = ["REGISTRY", "Job", "JobContext", "cron", "trigger"]


def trigger(name: str) -> bool:
    """Make the job due now and wake a cron worker (committed with the caller's borrowed
    connection's own transaction); False when no such job is known."""
    with db.connection() as conn:
        return _trigger(conn, name)
