"""The worker processes of a master: forked, kept at each kind's target, replaced
generation by generation, killed past a limit, reaped and recorded.

The decisions are servers/supervision.py's; this class carries them out. The master
(servers/master.py) owns the sockets, the signals and the server's own life, and tells
this class when a new generation starts and when everything stops.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import NoReturn, TextIO

import psutil

from prefork import metrics
from prefork.servers import supervision
from prefork.servers.exits import (
    ExitReason,
    ExitRecord,
    KillOrder,
    exit_record,
    last_line,
    log_exit,
)
from prefork.servers.health import Alert, HealthMonitor
from prefork.servers.kinds import HTTP, KINDS, Inherited, ProcessKind
from prefork.servers.supervision import BootBackoff, Verdict
from prefork.servers.worker_proc import SIGNALS, WorkerProc, fork_worker
from prefork.workers.handoff import channel_pair
from prefork.workers.scoreboard import READY, RETIRING, STOPPING, Scoreboard, Slot

log = logging.getLogger("prefork.master")

KEPT_EXITS = 100
# Seconds an HTTP worker told to stop its request at a limit (SIGUSR1) has to answer the
# client and exit before SIGKILL: unwinding and a short response take milliseconds; only a
# request that never returns to the interpreter (a long C call) uses them up.
LIMIT_ANSWER_GRACE = 3.0
QUIT_SPACING = 0.05  # seconds between two workers' stack dumps
Alerting = Callable[[list[tuple[str, Alert]]], None]


class Supervisor:
    def __init__(
        self,
        target: int,
        selector: selectors.BaseSelector,
        health: HealthMonitor,
        alert: Alerting,
        give_up: Callable[[], None],
        close_master: Callable[[], None],
    ) -> None:
        self.target = target  # HTTP workers wanted
        self.generation = 1  # the generation of workers being started or serving
        self.generations = 1  # the last generation number given (HUP, dev reload)
        self.workers: dict[int, WorkerProc] = {}
        self.scoreboard = Scoreboard()
        self.exits: deque[ExitRecord] = deque(maxlen=KEPT_EXITS)
        self.backoff = BootBackoff()
        self.stopping = False
        self._selector = selector
        self._health = health
        self._alert = alert
        self._give_up = give_up  # called when workers keep failing to start
        self._close_master = close_master  # in a new worker: closes what the master owns

    def dump_stacks(self, stream: TextIO) -> None:
        """QUIT: each worker's stack (its faulthandler writes it) under a header line."""
        for worker in list(self.workers.values()):
            stream.write(f"--- stack of prefork {worker.role} (pid {worker.pid}) ---\n")
            stream.flush()
            worker.send(signal.SIGQUIT)
            time.sleep(QUIT_SPACING)  # dumps are written asynchronously: keep them apart

    def new_generation(self) -> None:
        self.generations += 1
        self.generation = self.generations

    # -- keeping the count -------------------------------------------------------------------

    def maintain(self, inherited: Inherited, upgrading: bool) -> bool:
        """Start and stop workers to keep each kind at its target; True when a ready
        generation has just replaced the old one, or the old master's (`upgrading`)."""
        current = self._current()
        # An HTTP worker recycling itself is replaced at once: it serves on (RETIRING) or
        # finishes its last request (STOPPING) while its successor starts.
        states = {w.pid: w.slot.read().state for w in current if w.kind is HTTP}
        current = [w for w in current if states.get(w.pid) not in (RETIRING, STOPPING)]
        for kind in KINDS:
            target = kind.target(inherited.settings, inherited.database, self.target)
            of_kind = [w for w in current if w.kind is kind]
            number = supervision.number_to_start(of_kind, target)
            extra = supervision.surplus(of_kind, target)
            if number and self.backoff.may_spawn(time.monotonic()):
                self._spawn(number, kind, inherited)
            elif extra is not None:
                self.terminate(extra)
        ready = sum(1 for state in states.values() if state == READY)
        replaced = self._retire_old_generation(ready, upgrading)
        retiring = [self.workers[pid] for pid, state in states.items() if state == RETIRING]
        for worker in supervision.retiring_to_stop(retiring, ready, self.target):
            # It hands its idle clients over; the least loaded worker (its successor)
            # takes them.
            self.terminate(worker)
        return replaced

    def _retire_old_generation(self, ready: int, upgrading: bool) -> bool:
        """Once the current generation is all ready (`ready` of its HTTP workers serve),
        stop the old one: new workers accept before old ones stop."""
        old = supervision.old_workers(self.workers.values(), self.generation)
        if not old and not upgrading:
            return False
        if ready < self.target:
            return False
        for worker in old:
            self.terminate(worker)
        if old:
            log.info("reload: %d new worker(s) ready, %d old process(es) stopping", ready, len(old))
        return True

    def ready_http(self) -> int:
        """HTTP workers of the current generation serving."""
        return supervision.ready_count(w for w in self._current() if w.kind is HTTP)

    def _current(self) -> list[WorkerProc]:
        """The workers of the current generation not told to stop."""
        return [
            w
            for w in self.workers.values()
            if w.generation == self.generation and not w.terminating
        ]

    # -- starting and stopping ---------------------------------------------------------------

    def _spawn(self, number: int, kind: ProcessKind, inherited: Inherited) -> None:
        slot = self.scoreboard.acquire()
        master_end, worker_end = channel_pair()
        pid = fork_worker()
        if pid == 0:
            master_end.close()
            self._become_worker(number, slot, worker_end, kind, inherited)
        worker_end.close()
        slot.set_pid(pid)
        worker = WorkerProc(
            pid, number, slot, self.generation, master_end, kind, kind.limits(inherited.settings)
        )
        self._selector.register(master_end, selectors.EVENT_READ, worker)
        worker.watch()
        self.workers[pid] = worker
        log.info("spawned %s pid=%d", worker.role, pid)

    def _become_worker(
        self,
        number: int,
        slot: Slot,
        channel: socket.socket,
        kind: ProcessKind,
        inherited: Inherited,
    ) -> NoReturn:
        """In the child: drop the master's own state and serve; never returns."""
        try:
            signal.set_wakeup_fd(-1)
            for name in SIGNALS:
                signal.signal(getattr(signal, name), signal.SIG_DFL)
            # The epoll instance is shared with the master: close descriptors, never
            # unregister.
            for worker in self.workers.values():
                worker.channel.close()
            self._close_master()
            run = kind.start(inherited, number, slot, channel)
        except BaseException:
            os._exit(1)
        run()

    def terminate(self, worker: WorkerProc) -> None:
        worker.terminating = True
        worker.send(signal.SIGTERM)

    def kill(self, worker: WorkerProc, reason: ExitReason, detail: str) -> None:
        worker.order = KillOrder(reason, detail)
        worker.send(signal.SIGKILL)

    def kill_all(self) -> None:
        for worker in list(self.workers.values()):
            worker.send(signal.SIGKILL)

    def stop_all(self) -> None:
        """The server stops: no more workers started; each stops (SIGTERM) and its channel
        closes, so a stopping worker keeps its clients."""
        self.stopping = True
        for worker in self.workers.values():
            self.close_channel(worker)
        for worker in list(self.workers.values()):
            self.terminate(worker)

    def kill_remaining(self) -> None:
        """The end of a graceful stop: SIGKILL for those not already ordered to die."""
        if not all(w.order for w in self.workers.values()):
            log.warning("stop timeout: killing %d worker(s)", len(self.workers))
            for worker in list(self.workers.values()):
                self.kill(worker, ExitReason.STOP_TIMEOUT, "")

    def unwatch_channel(self, worker: WorkerProc) -> None:
        fd = worker.channel.fileno()
        if fd >= 0 and fd in self._selector.get_map():
            self._selector.unregister(worker.channel)

    def close_channel(self, worker: WorkerProc) -> None:
        self.unwatch_channel(worker)
        worker.channel.close()

    # -- exits -------------------------------------------------------------------------------

    def reaped(self, worker: WorkerProc, status: int) -> None:
        """A worker that exited, once what it handed over was taken: forget it."""
        self.close_channel(worker)
        self.record_exit(worker, status)

    def record_exit(self, worker: WorkerProc, status: int) -> None:
        view = worker.slot.read()
        replacing = worker.terminating and worker.generation != self.generation
        record = exit_record(
            worker.pid, worker.role, status, view, worker.order, worker.limits, replacing
        )
        self.exits.append(record)
        self._alert(self._health.record(record))
        counters = metrics.current()
        if counters is not None:
            counters.exits.labels(worker.kind.name, record.reason).inc()
            metrics.process_exited(worker.pid)
        self.scoreboard.release(worker.slot)
        log_exit(record)
        if supervision.failed_to_boot(worker, view.state, self.stopping):
            self._boot_failed(record)
        else:
            self.backoff.reset()

    def _boot_failed(self, record: ExitRecord) -> None:
        previous = supervision.previous_generation(self.workers.values(), self.generation)
        if previous:
            self._abandon_generation(previous, record)
            return
        delay = self.backoff.failed(time.monotonic())
        failures = self.backoff.failures
        if delay is None:
            log.error(
                "workers failed to start %d times in a row; giving up. Last error:\n%s",
                failures,
                record.error.strip() or record.detail,
            )
            self._give_up()
            return
        log.warning(
            "worker failed to start (%d/%d); next attempt in %.1fs",
            failures,
            supervision.MAX_BOOT_ATTEMPTS,
            delay,
        )

    def _abandon_generation(self, previous: int, record: ExitRecord) -> None:
        """A new worker failed to start while the previous generation serves (the new code
        raises at import, say): keep that one serving. Retrying would fail the same way
        and end, after MAX_BOOT_ATTEMPTS, by stopping the server, old workers included.
        The next reload tries again."""
        abandoned = self.generation
        for worker in list(self.workers.values()):
            if worker.generation == abandoned and not worker.terminating:
                self.terminate(worker)
        self.generation = previous
        self.backoff.reset()
        reason = last_line(record.error) or record.detail
        log.error(
            "reload abandoned: %s of generation %d could not start (%s); generation "
            "%d keeps serving. Fix the error, then reload (HUP, or a code change with "
            "dev reload)",
            record.role,
            abandoned,
            reason or record.reason,
            previous,
        )

    # -- watchdog ----------------------------------------------------------------------------

    def watchdog(self) -> None:
        now = time.monotonic()
        for worker in list(self.workers.values()):
            if worker.order is not None:
                self._kill_late(worker, now)
                continue
            verdict = supervision.time_verdict(worker, worker.slot.read(), now)
            if verdict is None:
                verdict = _memory_verdict(worker)
            if verdict is not None:
                self._carry_out(worker, verdict)

    def _carry_out(self, worker: WorkerProc, verdict: Verdict) -> None:
        """A limit reached by an HTTP worker in a request: it answers its client and exits
        (SIGUSR1, the limit named in its slot), or is killed after LIMIT_ANSWER_GRACE.
        Every other verdict, and the kinds that answer no client: killed at once."""
        if not verdict.limit or not worker.kind.answers_clients:
            self.kill(worker, verdict.reason, verdict.detail)
            return
        worker.order = KillOrder(verdict.reason, verdict.detail)
        worker.kill_at = time.monotonic() + LIMIT_ANSWER_GRACE
        worker.slot.order_stop(verdict.limit)
        worker.send(signal.SIGUSR1)

    def _kill_late(self, worker: WorkerProc, now: float) -> None:
        """SIGKILL for a worker still running at the end of its grace."""
        if worker.kill_at and now >= worker.kill_at:
            worker.kill_at = 0.0
            log.warning(
                "%s (pid %d) did not stop its request within %.0fs: killing it",
                worker.role,
                worker.pid,
                LIMIT_ANSWER_GRACE,
            )
            worker.send(signal.SIGKILL)


def _memory_verdict(worker: WorkerProc) -> Verdict | None:
    if not worker.limits.memory_hard or worker.process is None:
        return None
    try:
        rss = worker.process.memory_info().rss
    except psutil.Error:
        return None
    return supervision.memory_verdict(worker.limits, rss)
