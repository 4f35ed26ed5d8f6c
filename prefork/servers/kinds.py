"""The kinds of process the master forks: HTTP workers, cron workers and the realtime
process. A kind knows how many it wants, the limits a process of it is forked with, its
name in logs and status, and how to start one in the new child.

A process keeps the limits it was forked with: its exit is judged by them, even after a
HUP changed the configuration (its successor gets the new ones).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from prefork.config import Settings
from prefork.cron.runner import cron_limits
from prefork.db.startup import DatabaseRuntime
from prefork.workers.cron import CronWorker
from prefork.workers.http import HTTPWorker
from prefork.workers.realtime import RealtimeProcess, realtime_limits
from prefork.workers.scoreboard import Slot
from prefork.wsgi.handler import WSGIApp


@dataclass(frozen=True)
class WorkerLimits:
    """A process's limits, in seconds and bytes; 0: none."""

    time_cpu: int
    time_real: int  # limit_time_real: booting, a silent event loop, an HTTP request
    memory_soft: int
    memory_hard: int
    time_real_job: int = 0  # a cron job's wall-clock limit
    lifetime: int = 0  # limit_time_worker_cron


@dataclass(frozen=True)
class Inherited:
    """What a new process takes over from the master; the rest it closes."""

    settings: Settings
    listeners: list[socket.socket]
    realtime_listener: socket.socket | None
    app: WSGIApp | None
    database: DatabaseRuntime | None


Runner = Callable[[], NoReturn]


class ProcessKind:
    name = ""
    # HTTP workers answer clients: at a limit they are told to stop the request and answer
    # it; the other kinds are killed at once.
    answers_clients = False

    def role(self, number: int) -> str:
        return f"{self.name} worker #{number}"

    def target(
        self, settings: Settings, database: DatabaseRuntime | None, http_workers: int
    ) -> int:
        raise NotImplementedError

    def limits(self, settings: Settings) -> WorkerLimits:
        return WorkerLimits(
            settings.limit_time_cpu,
            settings.limit_time_real,
            settings.limit_memory_soft,
            settings.limit_memory_hard,
        )

    def start(
        self, inherited: Inherited, number: int, slot: Slot, channel: socket.socket
    ) -> Runner:
        """In the child: the process's run, built after closing what it does not use."""
        raise NotImplementedError


def _postgres(database: DatabaseRuntime | None) -> bool:
    """Cron workers and the bus need PostgreSQL (row locks, NOTIFY)."""
    return database is not None and database.target.is_postgres


class HTTPKind(ProcessKind):
    name = "http"
    answers_clients = True

    def target(
        self, settings: Settings, database: DatabaseRuntime | None, http_workers: int
    ) -> int:
        return http_workers  # TTIN and TTOU move it

    def start(
        self, inherited: Inherited, number: int, slot: Slot, channel: socket.socket
    ) -> Runner:
        if inherited.realtime_listener is not None:
            inherited.realtime_listener.close()
        database = inherited.database
        pool = database.database(inherited.settings) if database is not None else None
        return HTTPWorker(
            inherited.settings, number, slot, inherited.listeners, inherited.app, channel, pool
        ).run


class CronKind(ProcessKind):
    name = "cron"

    def target(
        self, settings: Settings, database: DatabaseRuntime | None, http_workers: int
    ) -> int:
        return settings.max_cron_threads if _postgres(database) else 0

    def limits(self, settings: Settings) -> WorkerLimits:
        real, cpu = cron_limits(settings)
        return WorkerLimits(
            cpu,
            settings.limit_time_real,
            settings.limit_memory_soft,
            settings.limit_memory_hard,
            time_real_job=real,
            lifetime=settings.limit_time_worker_cron,
        )

    def start(
        self, inherited: Inherited, number: int, slot: Slot, channel: socket.socket
    ) -> Runner:
        assert inherited.database is not None
        if inherited.realtime_listener is not None:
            inherited.realtime_listener.close()
        for sock in inherited.listeners:
            sock.close()  # a cron worker serves no HTTP
        conninfo = inherited.database.target.conninfo
        return CronWorker(inherited.settings, number, slot, conninfo).run


class RealtimeKind(ProcessKind):
    name = "realtime"

    def role(self, number: int) -> str:
        return "realtime process"

    def target(
        self, settings: Settings, database: DatabaseRuntime | None, http_workers: int
    ) -> int:
        return 1 if _postgres(database) else 0  # and a port of its own

    def limits(self, settings: Settings) -> WorkerLimits:
        soft, hard = realtime_limits(settings)
        return WorkerLimits(settings.limit_time_cpu, settings.limit_time_real, soft, hard)

    def start(
        self, inherited: Inherited, number: int, slot: Slot, channel: socket.socket
    ) -> Runner:
        assert inherited.database is not None and inherited.realtime_listener is not None
        for sock in inherited.listeners:
            sock.close()
        return RealtimeProcess(
            inherited.settings,
            slot,
            inherited.realtime_listener,
            inherited.database.target.conninfo,
        ).run


HTTP, CRON, REALTIME = HTTPKind(), CronKind(), RealtimeKind()
KINDS: tuple[ProcessKind, ...] = (HTTP, CRON, REALTIME)
