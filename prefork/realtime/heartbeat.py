"""The realtime process keeps its server's row in the host registry (prefork/db/hosts.py)
fresh, on the dispatcher's connection, and logs what goes wrong with the cluster as hosts
come and go: each warning once when it appears, and a line when it is gone."""

from __future__ import annotations

import logging
import time
from typing import Any

from prefork.config import Settings
from prefork.db.capacity import LIMITS, limits_of
from prefork.db.cluster import cluster_warnings
from prefork.db.hosts import BEAT, READ, REGISTER, describe, hosts_of, members

log = logging.getLogger("prefork.cluster")


class Heartbeat:
    def __init__(self, settings: Settings, master_pid: int) -> None:
        self.me = describe(settings, master_pid)  # a HUP replaces this process
        self._next = 0.0
        self._warned: set[str] = set()

    async def __call__(self, conn: Any) -> None:
        """One of the dispatcher's chores: at most one beat per BEAT seconds."""
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + BEAT
        await conn.execute(REGISTER, self.me.values())
        hosts = hosts_of(await (await conn.execute(READ)).fetchall())
        limits = limits_of(await (await conn.execute(LIMITS)).fetchall())
        self._report(set(cluster_warnings(self.me, members(hosts, self.me), *limits)))

    def _report(self, warnings: set[str]) -> None:
        for warning in sorted(warnings - self._warned):
            log.warning("cluster: %s", warning)
        if self._warned and not warnings:
            log.info("cluster: no more warnings about the hosts on this database")
        self._warned = warnings
