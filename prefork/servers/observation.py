"""What the master shows of itself: the state file (written here only; prefork.ops.state
is its one reader, for `prefork status` and the dashboard), the RSS gauges of the metrics
endpoint, and the dashboard's memory chart."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Sequence

import psutil

from prefork import __version__, metrics
from prefork.config import Settings
from prefork.ops.state import (
    ExitRow,
    MasterState,
    ProcessRow,
    remove_state,
    state_path,
    write_state,
)
from prefork.servers.kinds import KINDS
from prefork.servers.worker_proc import WorkerProc
from prefork.workers.scoreboard import BOOTING, READY, RETIRING, STOPPING

log = logging.getLogger("prefork.master")

STATE_INTERVAL = 1.0  # seconds between two writes of the state file
MEMORY_SAMPLE = 30  # seconds between two points of the dashboard's memory chart
MEMORY_POINTS = 120  # an hour of them
_STATE_LABELS = {BOOTING: "booting", READY: "ready", RETIRING: "retiring", STOPPING: "stopping"}


class Observation:
    """The master's own process, when it started, and the memory chart's points."""

    def __init__(self, settings: Settings) -> None:
        self.path = state_path(settings)
        self.process = psutil.Process()
        self.started_at = time.time()
        self.next_state = 0.0
        self.next_memory_sample = 0.0
        self.memory_history: dict[str, deque[tuple[int, int]]] = {}

    def due(self, now: float) -> bool:
        """True once per STATE_INTERVAL: the caller then builds and publishes the state."""
        if now < self.next_state:
            return False
        self.next_state = now + STATE_INTERVAL
        return True

    def state(
        self,
        *,
        config: str | None,
        target: int,
        listeners: list[str],
        workers: Sequence[WorkerProc],
        exits: Iterable[ExitRow],
        alerts: list[dict[str, object]],
        database: dict[str, object],
        draining: bool,
    ) -> MasterState:
        now = time.monotonic()
        master = process_row(self.process, "master", self.started_at, 0, "", 0.0)
        if draining:
            master["state"] = "draining"
        return {
            "version": __version__,
            "master": master,
            "config": config,
            "mode": "multi-processing",
            "target_workers": target,
            "listeners": listeners,
            "processes": [worker_row(w, now) for w in workers],
            "exits": list(exits),
            "alerts": alerts,
            "database": database,
            "memory_history": {role: list(points) for role, points in self.memory_history.items()},
        }

    def publish(self, state: MasterState, workers: Sequence[WorkerProc]) -> None:
        """The state file, the RSS gauges and, when due, a point of the memory chart;
        `workers` in the order of state["processes"]."""
        try:
            write_state(self.path, state)
        except OSError as exc:
            log.warning("cannot write the state file %s: %s", self.path, exc)
        _publish_rss(state, workers)
        self._sample_memory(state)

    def remove(self) -> None:
        remove_state(self.path)

    def _sample_memory(self, state: MasterState) -> None:
        """Each process's RSS every MEMORY_SAMPLE seconds over the last hour, by role (a
        worker's replacement continues its line), for the dashboard's chart."""
        now = time.monotonic()
        if now < self.next_memory_sample:
            return
        self.next_memory_sample = now + MEMORY_SAMPLE
        at = round(time.time())  # the chart's time axis
        for row in [state["master"], *state["processes"]]:
            history = self.memory_history.setdefault(row["role"], deque(maxlen=MEMORY_POINTS))
            history.append((at, row["rss"]))


def _publish_rss(state: MasterState, workers: Sequence[WorkerProc]) -> None:
    counters = metrics.current()
    if counters is None:
        return
    totals: dict[str, int] = {"master": state["master"]["rss"]}
    for worker, row in zip(workers, state["processes"], strict=True):
        totals[worker.kind.name] = totals.get(worker.kind.name, 0) + row["rss"]
    for role in ("master", *(kind.name for kind in KINDS)):
        counters.rss.labels(role).set(totals.get(role, 0))


def worker_row(worker: WorkerProc, now: float) -> ProcessRow:
    view = worker.slot.read()
    elapsed = now - view.request_started if view.request_started else 0.0
    line = view.request_line if view.request_started else ""
    row = process_row(worker.process, worker.role, worker.started_at, view.requests, line, elapsed)
    row["state"] = "stopping" if worker.terminating else _STATE_LABELS.get(view.state, "?")
    row["generation"] = worker.generation
    row["sending_bytes"] = view.sending_bytes
    row["sending_clients"] = view.sending_clients
    return row


def process_row(
    process: psutil.Process | None,
    role: str,
    started_at: float,
    requests: int,
    request: str,
    elapsed: float,
) -> ProcessRow:
    rss, cpu = 0, 0.0
    if process is not None:
        try:
            with process.oneshot():
                rss = process.memory_info().rss
                cpu = process.cpu_percent(interval=None)
        except psutil.Error:
            pass
    return {
        "pid": process.pid if process else 0,
        "role": role,
        "rss": rss,
        "cpu": cpu,
        "requests": requests,
        "started_at": started_at,
        "request": request,
        "request_seconds": round(elapsed, 3),
        "state": "running",
    }
