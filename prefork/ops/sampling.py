"""Once a second, from a serving loop: the request tally written out and the database pool
sampled for /metrics (not per request)."""

from __future__ import annotations

import time

from prefork import metrics
from prefork.db.pool import Database

INTERVAL = 1.0


class Sampler:
    def __init__(self, database: Database | None) -> None:
        self.database = database
        self.next = 0.0

    def maybe_sample(self) -> None:
        counters = metrics.current()
        if counters is None:
            return
        now = time.monotonic()
        if now < self.next:
            return
        self.next = now + INTERVAL
        counters.flush()
        if self.database is None:
            return
        opened, lent = self.database.usage()
        counters.db_open.set(opened)
        counters.db_in_use.set(lent)
