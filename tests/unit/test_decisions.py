"""The master's decisions, in-process: which worker to start or stop, the back-off after
workers fail to start, a reload that fails, retiring workers, the watchdog's verdicts and
how clients are spread. Workers here are records with real scoreboard slots; no process
is started, and the signals the master would send are recorded instead."""

from __future__ import annotations

import selectors
import signal
import socket
from collections.abc import Iterator

import pytest

from prefork.config import Settings
from prefork.servers import supervision
from prefork.servers.balancing import BALANCE_SPREAD, idle_channels, shedding
from prefork.servers.exits import ExitReason
from prefork.servers.health import HealthMonitor
from prefork.servers.kinds import CRON, HTTP, Inherited, ProcessKind, WorkerLimits
from prefork.servers.supervision import CRON_GRACE, MAX_BOOT_ATTEMPTS, BootBackoff
from prefork.servers.supervisor import Supervisor
from prefork.servers.worker_proc import WorkerProc
from prefork.workers import exitcodes
from prefork.workers.http import REBALANCE_AFTER
from prefork.workers.scoreboard import (
    BOOTING,
    MEMORY_LIMIT,
    READY,
    REAL_TIME_LIMIT,
    RETIRING,
    Scoreboard,
)

NO_LIMITS = WorkerLimits(time_cpu=0, time_real=0, memory_soft=0, memory_hard=0)
NOW = 1000.0


class Workers:
    """Worker records over one scoreboard; the signals sent to them, recorded."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.scoreboard = Scoreboard(slots=16)
        self.sent: list[tuple[int, int]] = []
        self.sockets: list[socket.socket] = []
        self.next_pid = 100
        monkeypatch.setattr(
            "prefork.servers.worker_proc.os.kill",
            lambda pid, signum: self.sent.append((pid, signum)),
        )

    def make(
        self,
        number: int,
        state: int = READY,
        generation: int = 1,
        kind: ProcessKind = HTTP,
        limits: WorkerLimits = NO_LIMITS,
    ) -> WorkerProc:
        self.next_pid += 1
        slot = self.scoreboard.acquire(self.next_pid)
        slot.set_state(state)
        ours, theirs = socket.socketpair()  # the channel a forked worker would hold
        self.sockets += [ours, theirs]
        return WorkerProc(self.next_pid, number, slot, generation, ours, kind, limits, started=NOW)

    def terminated(self) -> list[int]:
        return [pid for pid, signum in self.sent if signum == signal.SIGTERM]


@pytest.fixture
def workers(monkeypatch: pytest.MonkeyPatch) -> Iterator[Workers]:
    made = Workers(monkeypatch)
    yield made
    for sock in made.sockets:
        sock.close()


# -- keeping the count ------------------------------------------------------------------------


def test_a_replacement_takes_the_lowest_free_number(workers: Workers) -> None:
    current = [workers.make(1), workers.make(3)]
    assert supervision.number_to_start(current, 3) == 2
    assert supervision.number_to_start(current, 2) == 0
    assert supervision.number_to_start([], 1) == 1


def test_a_kind_above_its_target_stops_its_highest_numbered_worker(workers: Workers) -> None:
    current = [workers.make(2), workers.make(3), workers.make(1)]
    assert supervision.surplus(current, 2) is current[1]
    assert supervision.surplus(current, 3) is None


def test_boot_failures_back_off_doubling_then_give_up() -> None:
    backoff = BootBackoff()
    delays = [backoff.failed(NOW) for _ in range(MAX_BOOT_ATTEMPTS)]
    assert delays == [0.1, 0.2, 0.4, 0.8, None]
    assert not backoff.may_spawn(NOW + 0.7) and backoff.may_spawn(NOW + 0.8)
    backoff.reset()
    assert backoff.failed(NOW) == 0.1  # a worker that got ready started the count again


def test_the_back_off_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervision, "MAX_BOOT_ATTEMPTS", 10)
    backoff = BootBackoff()
    delays = [backoff.failed(NOW) for _ in range(9)]
    assert delays[-3:] == [supervision.BOOT_BACKOFF_MAX] * 3


def test_only_a_worker_that_died_booting_on_its_own_failed_to_boot(workers: Workers) -> None:
    booting = workers.make(1, BOOTING)
    assert supervision.failed_to_boot(booting, BOOTING, stopping=False)
    assert not supervision.failed_to_boot(booting, READY, stopping=False)
    assert not supervision.failed_to_boot(booting, BOOTING, stopping=True)
    booting.terminating = True
    assert not supervision.failed_to_boot(booting, BOOTING, stopping=False)


def test_retiring_workers_stop_only_while_the_others_make_the_target(workers: Workers) -> None:
    retiring = [workers.make(1, RETIRING), workers.make(2, RETIRING)]
    assert supervision.retiring_to_stop(retiring, ready=4, target=4) == retiring
    assert supervision.retiring_to_stop(retiring, ready=3, target=4) == retiring[:1]
    assert supervision.retiring_to_stop(retiring, ready=2, target=4) == []


# -- the supervisor, with no worker to fork ---------------------------------------------------


def supervisor_of(made: list[WorkerProc], target: int) -> tuple[Supervisor, list[bool]]:
    gave_up: list[bool] = []
    supervisor = Supervisor(
        target,
        selectors.DefaultSelector(),
        HealthMonitor(60, 0, 0),
        lambda events: None,
        lambda: gave_up.append(True),
        lambda: None,
    )
    supervisor.workers = {w.pid: w for w in made}
    supervisor.backoff.next_spawn = float("inf")  # a spawn would fork: none is due
    return supervisor, gave_up


def inherited(workers: int) -> Inherited:
    return Inherited(Settings(workers=workers), [], None, None, None)


def test_a_ready_generation_replaces_the_old_one(workers: Workers) -> None:
    old = [workers.make(1), workers.make(2)]
    new = [workers.make(1, generation=2), workers.make(2, BOOTING, generation=2)]
    supervisor, _ = supervisor_of(old + new, target=2)
    supervisor.new_generation()
    assert not supervisor.maintain(inherited(2), upgrading=False)
    assert workers.terminated() == []  # one new worker is still booting
    new[1].slot.set_state(READY)
    assert supervisor.maintain(inherited(2), upgrading=False)
    assert workers.terminated() == [w.pid for w in old]


def test_retiring_workers_are_stopped_once_their_successors_serve(workers: Workers) -> None:
    retiring = workers.make(1, RETIRING)
    supervisor, _ = supervisor_of([retiring, workers.make(2)], target=2)
    supervisor.maintain(inherited(2), upgrading=False)
    assert workers.terminated() == []  # its successor has not started yet
    successor = workers.make(3)
    supervisor.workers[successor.pid] = successor
    supervisor.maintain(inherited(2), upgrading=False)
    assert workers.terminated() == [retiring.pid]


def test_workers_failing_to_start_make_the_master_give_up(workers: Workers) -> None:
    supervisor, gave_up = supervisor_of([], target=1)
    for attempt in range(MAX_BOOT_ATTEMPTS):
        assert not gave_up
        booting = workers.make(1, BOOTING)
        booting.slot.set_error("ImportError: No module named 'app'")
        supervisor.record_exit(booting, exitcodes.BOOT_FAILED << 8)
        assert supervisor.exits[-1].reason is ExitReason.BOOT_FAILED
        assert supervisor.backoff.failures == attempt + 1
    assert gave_up == [True]


def test_a_reload_whose_workers_cannot_start_keeps_the_old_generation(workers: Workers) -> None:
    old = [workers.make(1), workers.make(2)]
    supervisor, gave_up = supervisor_of(old, target=2)
    supervisor.new_generation()
    starting = workers.make(2, BOOTING, generation=2)
    failed = workers.make(1, BOOTING, generation=2)
    supervisor.workers[starting.pid] = starting
    supervisor.record_exit(failed, exitcodes.BOOT_FAILED << 8)
    assert supervisor.generation == 1 and not gave_up
    assert supervisor.backoff.failures == 0
    assert workers.terminated() == [starting.pid]  # the rest of the abandoned generation


def test_a_ready_worker_exiting_resets_the_back_off(workers: Workers) -> None:
    supervisor, _ = supervisor_of([], target=1)
    supervisor.backoff.failures = 3
    supervisor.record_exit(workers.make(1, READY), exitcodes.REQUEST_LIMIT << 8)
    assert supervisor.backoff.failures == 0
    assert supervisor.exits[-1].reason is ExitReason.REQUEST_LIMIT


# -- the watchdog ------------------------------------------------------------------------------


def test_a_worker_not_ready_within_limit_time_real_is_killed(workers: Workers) -> None:
    limits = WorkerLimits(time_cpu=0, time_real=10, memory_soft=0, memory_hard=0)
    booting = workers.make(1, BOOTING, limits=limits)
    assert supervision.time_verdict(booting, booting.slot.read(), NOW + 9) is None
    verdict = supervision.time_verdict(booting, booting.slot.read(), NOW + 11)
    assert verdict is not None and verdict.reason is ExitReason.BOOT_TIMEOUT
    assert verdict.limit == 0  # killed at once: it has no client to answer


def test_a_silent_event_loop_is_killed(workers: Workers) -> None:
    limits = WorkerLimits(time_cpu=0, time_real=10, memory_soft=0, memory_hard=0)
    worker = workers.make(1, READY, limits=limits)
    worker.slot.beat(NOW)
    assert supervision.time_verdict(worker, worker.slot.read(), NOW + 5) is None
    verdict = supervision.time_verdict(worker, worker.slot.read(), NOW + 12)
    assert verdict is not None and verdict.reason is ExitReason.REAL_TIME
    assert verdict.detail == "event loop silent for 12.0s" and verdict.limit == 0


def test_a_long_request_is_stopped_so_its_client_gets_an_answer(workers: Workers) -> None:
    limits = WorkerLimits(time_cpu=0, time_real=10, memory_soft=0, memory_hard=0)
    worker = workers.make(1, READY, limits=limits)
    worker.slot.begin_request(NOW, b"GET /slow HTTP/1.1")
    verdict = supervision.time_verdict(worker, worker.slot.read(), NOW + 10.5)
    assert verdict is not None and verdict.reason is ExitReason.REAL_TIME
    assert verdict.limit == REAL_TIME_LIMIT
    assert verdict.detail == "request running 10.5s > limit 10s"


def test_a_cron_job_gets_a_grace_to_record_its_own_timeout(workers: Workers) -> None:
    limits = WorkerLimits(time_cpu=0, time_real=10, memory_soft=0, memory_hard=0, time_real_job=60)
    worker = workers.make(1, READY, kind=CRON, limits=limits)
    worker.slot.begin_request(NOW, b"job")
    assert supervision.time_verdict(worker, worker.slot.read(), NOW + 60 + CRON_GRACE) is None
    verdict = supervision.time_verdict(worker, worker.slot.read(), NOW + 61 + CRON_GRACE)
    assert verdict is not None and verdict.reason is ExitReason.CRON_TIMEOUT


def test_no_limit_no_verdict(workers: Workers) -> None:
    worker = workers.make(1, BOOTING)
    assert supervision.time_verdict(worker, worker.slot.read(), NOW + 10**6) is None
    assert supervision.memory_verdict(NO_LIMITS, 1 << 40) is None


def test_memory_above_limit_memory_hard(workers: Workers) -> None:
    limits = WorkerLimits(time_cpu=0, time_real=0, memory_soft=0, memory_hard=200 << 20)
    assert supervision.memory_verdict(limits, 200 << 20) is None
    verdict = supervision.memory_verdict(limits, 201 << 20)
    assert verdict is not None and verdict.reason is ExitReason.MEMORY_HARD
    assert verdict.limit == MEMORY_LIMIT
    assert verdict.detail == "RSS 201.0 MiB > limit 200.0 MiB"


# -- spreading clients -------------------------------------------------------------------------


def test_the_most_loaded_worker_sheds_half_the_difference(workers: Workers) -> None:
    busy, quiet = workers.make(1), workers.make(2)
    assert shedding([(6, busy), (1, quiet)]) == (busy, 2)
    assert shedding([(BALANCE_SPREAD, busy), (0, quiet)]) == (busy, 1)
    assert shedding([(BALANCE_SPREAD - 1, busy), (0, quiet)]) is None
    assert shedding([(9, busy)]) is None


def test_parked_clients_go_to_idle_workers_first(workers: Workers) -> None:
    idle, short, long = workers.make(1), workers.make(2), workers.make(3)
    short.slot.begin_request(NOW, b"GET / HTTP/1.1")
    long.slot.begin_request(NOW - REBALANCE_AFTER - 1, b"GET /report HTTP/1.1")
    old, booting = workers.make(4, generation=0), workers.make(5, BOOTING)
    everyone = [idle, short, long, old, booting]
    assert [c.channel for c in idle_channels(everyone, 1, NOW)] == [idle.channel]
    # None idle at this instant: those whose request has just started; never the long one.
    assert [c.channel for c in idle_channels(everyone[1:], 1, NOW)] == [short.channel]
    assert idle_channels([long, old, booting], 1, NOW) == []
