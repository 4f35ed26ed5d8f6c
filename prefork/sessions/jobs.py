"""prefork's own scheduled job for sessions: deleting those idle too long from a store that
does not expire them by itself (the file store; Redis does it with key TTLs)."""

from __future__ import annotations

from prefork.cron import JobContext, cron
from prefork.sessions.stores import make_store

GC_JOB = "prefork.session_gc"


@cron(every="1h", name=GC_JOB)
def collect_sessions(ctx: JobContext) -> None:
    if ctx.settings is None:
        return
    removed = make_store(ctx.settings).collect()
    if removed:
        ctx.log.info("deleted %d expired session(s)", removed)
