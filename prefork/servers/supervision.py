"""The master's decisions, as functions of what it knows: which worker to start or stop
to keep a kind at its target, when to try again after workers failed to start, which
workers a new generation replaces, and the watchdog's verdict on a running worker.

They read the workers' slots and nothing else, and act on nothing: the supervisor
(servers/supervisor.py) carries them out. tests/unit/test_decisions.py runs them
in-process.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prefork.servers.exits import ExitReason, mib
from prefork.servers.kinds import CRON, WorkerLimits
from prefork.servers.worker_proc import WorkerProc
from prefork.workers.scoreboard import (
    BOOTING,
    MEMORY_LIMIT,
    READY,
    REAL_TIME_LIMIT,
    RETIRING,
    SlotView,
)

MAX_BOOT_ATTEMPTS = 5  # consecutive workers dying before ready: give up
BOOT_BACKOFF_START = 0.1  # seconds before the second attempt, doubled on each failure
BOOT_BACKOFF_MAX = 3.2
CRON_GRACE = 5  # seconds the master gives a cron worker to record its own timeout


# -- keeping the count ------------------------------------------------------------------------


def number_to_start(current: Sequence[WorkerProc], target: int) -> int:
    """The number of the worker to start (the lowest free one: a replacement takes the
    number of the worker it replaces); 0 when the kind has its target."""
    if len(current) >= target:
        return 0
    used = {w.number for w in current}
    return next(n for n in range(1, len(current) + 2) if n not in used)


def surplus(current: Sequence[WorkerProc], target: int) -> WorkerProc | None:
    """The worker to stop when the kind has more than its target: the highest numbered."""
    if len(current) <= target:
        return None
    return max(current, key=lambda w: w.number)


class BootBackoff:
    """Workers dying before they got ready, one after another: each next attempt waits
    twice as long, from BOOT_BACKOFF_START up to BOOT_BACKOFF_MAX; the MAX_BOOT_ATTEMPTS-th
    failure in a row gives up. A worker that got ready starts the count again."""

    def __init__(self) -> None:
        self.failures = 0
        self.next_spawn = 0.0  # monotonic time before which no worker is started

    def may_spawn(self, now: float) -> bool:
        return now >= self.next_spawn

    def reset(self) -> None:
        self.failures = 0

    def failed(self, now: float) -> float | None:
        """One more failure: the delay before the next attempt, or None to give up."""
        self.failures += 1
        if self.failures >= MAX_BOOT_ATTEMPTS:
            return None
        delay: float = min(BOOT_BACKOFF_START * 2.0 ** (self.failures - 1), BOOT_BACKOFF_MAX)
        self.next_spawn = now + delay
        return delay


def failed_to_boot(worker: WorkerProc, state: int, stopping: bool) -> bool:
    """True for a worker that exited before it got ready, on its own."""
    # A slot never goes back to BOOTING: any other state means the worker got ready.
    return state == BOOTING and not worker.terminating and not stopping


# -- generations ------------------------------------------------------------------------------


def old_workers(workers: Iterable[WorkerProc], generation: int) -> list[WorkerProc]:
    """Workers of an older generation not yet told to stop."""
    return [w for w in workers if w.generation != generation and not w.terminating]


def previous_generation(workers: Iterable[WorkerProc], generation: int) -> int:
    """The newest older generation still serving during a reload; 0 when none."""
    return max((w.generation for w in old_workers(workers, generation)), default=0)


def ready_count(workers: Iterable[WorkerProc]) -> int:
    return sum(1 for w in workers if w.slot.read().state == READY)


def retiring_to_stop(
    retiring: Sequence[WorkerProc], ready: int, target: int
) -> Sequence[WorkerProc]:
    """Of the workers past limit_request (serving on, RETIRING), those to stop now: as
    many as leave `ready` others and the retiring ones kept making the target."""
    return retiring[: max(0, ready - target + len(retiring))]


# -- the watchdog ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """A worker to stop for a limit it crossed."""

    reason: ExitReason
    detail: str
    # The slot's limit code when an HTTP worker may first answer its client (SIGUSR1);
    # 0: killed at once.
    limit: int = 0


def time_verdict(worker: WorkerProc, view: SlotView, now: float) -> Verdict | None:
    """A worker booting, silent or running a request or job for too long."""
    if view.request_started:
        return _running_verdict(worker, now - view.request_started)
    limit = worker.limits.time_real
    if not limit:
        return None
    if view.state == BOOTING and now - worker.started > limit:
        return Verdict(ExitReason.BOOT_TIMEOUT, f"not ready after {limit}s")
    if view.state in (READY, RETIRING) and view.heartbeat and now - view.heartbeat > limit:
        return Verdict(ExitReason.REAL_TIME, f"event loop silent for {now - view.heartbeat:.1f}s")
    return None


def _running_verdict(worker: WorkerProc, elapsed: float) -> Verdict | None:
    """A request past limit_time_real; a cron job past its limit that the worker did
    not stop itself (it records the timeout and exits on its own first)."""
    limits = worker.limits
    if worker.kind is CRON:
        limit = limits.time_real_job
        if limit and elapsed > limit + CRON_GRACE:
            return Verdict(
                ExitReason.CRON_TIMEOUT,
                f"job running {elapsed:.1f}s > limit {limit}s and did not stop itself",
            )
    elif limits.time_real and elapsed > limits.time_real:
        return Verdict(
            ExitReason.REAL_TIME,
            f"request running {elapsed:.1f}s > limit {limits.time_real}s",
            REAL_TIME_LIMIT,
        )
    return None


def memory_verdict(limits: WorkerLimits, rss: int) -> Verdict | None:
    """A worker above limit_memory_hard."""
    if limits.memory_hard and rss > limits.memory_hard:
        return Verdict(
            ExitReason.MEMORY_HARD,
            f"RSS {mib(rss)} > limit {mib(limits.memory_hard)}",
            MEMORY_LIMIT,
        )
    return None
