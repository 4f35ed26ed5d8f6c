"""prefork's Prometheus metrics, in prometheus_client's multiprocess mode.

Every process writes its own files under data_dir/metrics, which the master (or the
threaded server) wipes at start, before anything is counted; `/metrics` sums them. The
master marks the files of each exited worker dead, so gauges of live processes only count
the living. With `metrics_allow` empty nothing is set up and nothing is counted.
"""

from __future__ import annotations

import bisect
import collections
import logging
import os
import shutil
import struct
import time
from collections.abc import Mapping
from typing import Any

import psutil

from prefork.config import Settings
from prefork.datadir import private_dir

log = logging.getLogger("prefork")

DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client when it is imported
DURATION_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
)
_current: Metrics | None = None


class Metrics:
    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.requests = Counter(
            "prefork_http_requests", "HTTP responses, by status code", ["status"]
        )
        self.refused = Counter(
            "prefork_http_refused",
            "Requests refused before the application (malformed, over a "
            "size limit, not received in time), by status code",
            ["status"],
        )
        self.duration = Histogram(
            "prefork_http_request_duration_seconds",
            "Time to answer an HTTP request",
            buckets=DURATION_BUCKETS,
        )
        self.exits = Counter("prefork_worker_exits", "Process exits, by reason", ["role", "reason"])
        self.rss = Gauge(
            "prefork_rss_bytes",
            "Resident memory of the processes of a role",
            ["role"],
            multiprocess_mode="mostrecent",
        )
        self.cron_runs = Counter(
            "prefork_cron_runs", "Cron job runs, by job and outcome", ["job", "status"]
        )
        self.cron_duration = Histogram(
            "prefork_cron_duration_seconds", "Cron job run time", ["job"], buckets=DURATION_BUCKETS
        )
        self.bus_messages = Counter(
            "prefork_bus_messages", "Bus messages read by the realtime process"
        )
        self.websockets = Gauge(
            "prefork_websockets", "Open websocket connections", multiprocess_mode="livesum"
        )
        self.db_in_use = Gauge(
            "prefork_db_connections_in_use",
            "Database connections lent out by the pools",
            multiprocess_mode="livesum",
        )
        self.send_buffer = Gauge(
            "prefork_http_send_buffer_bytes",
            "Bytes of responses HTTP workers keep for slow readers",
            multiprocess_mode="livesum",
        )
        self.db_open = Gauge(
            "prefork_db_connections_open",
            "Connections the pools hold open",
            multiprocess_mode="livesum",
        )
        # Requests are queued in plain Python and added to the shared files by flush(), once
        # a second from the serving loop: a write per request (a lock and two mmap updates
        # per metric) cost 16% of a hello-world worker's throughput. deque.append and
        # popleft are atomic, so threaded mode's serving threads need no lock either.
        self._served: collections.deque[tuple[int, float]] = collections.deque()
        self._refused: collections.deque[int] = collections.deque()

    def request(self, status: int, seconds: float) -> None:
        self._served.append((status, seconds))

    def refusal(self, status: int) -> None:
        """A request the HTTP engine answered itself (see prefork.http.loop._refuse)."""
        self._refused.append(status)

    def flush(self) -> None:
        """Add what was served and refused since the last flush to the shared files."""
        self._flush_refused()
        self._flush_served()

    def _flush_refused(self) -> None:
        refused = self._refused
        _by_status(
            self.refused, collections.Counter(refused.popleft() for _ in range(len(refused)))
        )

    def _flush_served(self) -> None:
        statuses: dict[int, int] = {}
        buckets = [0] * (len(DURATION_BUCKETS) + 1)  # the last one is +Inf
        total = 0.0
        served = self._served
        for _ in range(len(served)):  # what is there now; later ones wait for the next flush
            status, seconds = served.popleft()
            statuses[status] = statuses.get(status, 0) + 1
            buckets[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
            total += seconds
        _by_status(self.requests, statuses)
        if statuses:
            # prometheus_client keeps a histogram as per-bucket counts and a sum (observe()
            # adds one observation at a time); a batch goes to the same values.
            for value, count in zip(self.duration._buckets, buckets, strict=True):
                if count:
                    value.inc(count)
            self.duration._sum.inc(total)


def _by_status(counter: Any, statuses: Mapping[int, int]) -> None:
    for status, count in statuses.items():
        counter.labels(str(status)).inc(count)


def setup(settings: Settings) -> Metrics | None:
    """In the master or the threaded server, before any fork: a fresh directory of its own
    (data_dir/metrics/<pid>: servers sharing a data_dir, or a new master during an upgrade,
    never touch each other's files); those of servers no longer running are deleted."""
    global _current
    if not settings.metrics_allow:
        return None
    root = os.path.join(settings.data_dir, "metrics")
    path = os.path.join(root, str(os.getpid()))
    try:
        _remove_stale(root)
        shutil.rmtree(path, ignore_errors=True)
        private_dir(path)
        os.environ[DIR_ENV] = path
        _current = Metrics()
    except OSError as exc:
        log.warning("metrics disabled: %s", exc)
        os.environ.pop(DIR_ENV, None)
        _current = None
    return _current


def _remove_stale(root: str) -> None:
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return
    for name in names:
        if not name.isdigit() or not psutil.pid_exists(int(name)):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def tear_down() -> None:
    """At the server's exit: its directory goes."""
    path = os.environ.get(DIR_ENV)
    if _current is not None and path:
        shutil.rmtree(path, ignore_errors=True)


def current() -> Metrics | None:
    return _current


def process_exited(pid: int) -> None:
    if _current is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


# prometheus_client creates a process's file empty and sizes it a moment later: a scrape
# that reads it in between fails with struct.error (a worker was being born). Read again.
READ_ATTEMPTS = 5
READ_RETRY_DELAY = 0.01


def exposition() -> bytes:
    """The text format of every process's metrics, summed."""
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    for _ in range(READ_ATTEMPTS - 1):
        try:
            return bytes(generate_latest(registry))
        except struct.error:
            time.sleep(READ_RETRY_DELAY)
    return bytes(generate_latest(registry))  # the last attempt's error is a real one
