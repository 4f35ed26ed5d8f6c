"""Per-process limits applied inside a worker: CPU time per request, the memory backstop."""

from __future__ import annotations

import os
import resource
import signal
import time

import psutil

# The address-space backstop sits this far above limit_memory_hard: a request whose RSS
# stays between the soft and the hard limit must always complete (docs/deployment.md,
# "Limits"), and a Python process maps much more than it touches (thread stacks, arenas,
# shared libraries).
AS_BACKSTOP_FACTOR = 2
AS_BACKSTOP_MARGIN = 512 << 20


def disable_core_dumps() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def set_address_space_backstop(limit_memory_hard: int) -> int:
    """Cap virtual memory well above the hard limit; returns the cap in bytes (0 = none)."""
    if limit_memory_hard <= 0:
        return 0
    cap = limit_memory_hard * AS_BACKSTOP_FACTOR + AS_BACKSTOP_MARGIN
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    return cap


# How fast one process can make memory resident: the kernel must zero every page it hands
# out, and no machine this runs on zeroes faster than this. Between two readings, RSS can
# have grown by at most this rate times the wall time elapsed, which is what lets the
# per-request check skip its system call while the soft limit is out of reach.
MAX_RSS_GROWTH = 64 << 30  # bytes per second

# With a warning, CPU seconds between it and the kill: time for the worker to answer the
# request and exit. Unwinding the application and sending a short response takes well
# under a second of CPU; a request that never returns to the interpreter uses it up.
CPU_ANSWER_GRACE = 3


class RequestLimits:
    """The per-request CPU limit and the soft memory check, without a system call for the
    requests that cannot have reached either limit.

    CPU: RLIMIT_CPU is armed so that every request may use at least `cpu_seconds` of CPU and
    at most `cpu_seconds` + 2 (the kernel counts whole seconds); it is re-armed only when
    the budget left would fall below `cpu_seconds`, so setrlimit runs about once per CPU
    second, not once per request. SIGXCPU keeps its default action (terminate): a runaway
    request cannot catch it, and the master reads it from the exit status.

    With `warn` (HTTP workers), SIGPROF comes first, when the budget is used up: ITIMER_PROF
    counts the same user and system time, and its handler answers the client. RLIMIT_CPU
    then sits CPU_ANSWER_GRACE seconds later, as the backstop for a request that never
    returns to the interpreter. The backstop is the soft limit, not the hard one: an
    unprivileged process can lower its hard limit but never raise it for the next request.

    Memory: the peak RSS from the same getrusage call can only be above the current RSS,
    so the current value is read only when the peak crosses `memory_soft`.

    Both readings come from one getrusage call, made only when the wall time since the
    last one could have consumed the margin left: the process cannot use more CPU seconds
    than it has CPUs per wall second, nor grow faster than MAX_RSS_GROWTH. A request that
    could have crossed either limit is always checked right after it.
    """

    __slots__ = ("_cpus", "_hard", "_soft", "cpu_seconds", "memory_soft", "next_reading", "warn")

    def __init__(self, cpu_seconds: int, memory_soft: int, warn: bool = False) -> None:
        self.cpu_seconds = cpu_seconds
        self.memory_soft = memory_soft
        self.warn = warn
        self._hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
        self._soft = 0
        self._cpus = max(1, len(os.sched_getaffinity(0)))
        # Monotonic time before which neither limit can have been reached; 0 forces a reading.
        # Public: the worker compares it with the clock itself after each request and calls
        # after_request() only once it has passed (a call per request, saved).
        self.next_reading = 0.0

    def after_request(self) -> int:
        """Re-arm the CPU limit for the next request; the RSS when above the soft limit."""
        now = time.monotonic()
        if now < self.next_reading:
            return 0
        usage = resource.getrusage(resource.RUSAGE_SELF)
        used, peak = usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024
        if self.cpu_seconds:
            self._arm(used)
        self.next_reading = now + self._time_to_reach(used, peak)
        return _rss_above(self.memory_soft, peak)

    def _time_to_reach(self, used: float, peak: int) -> float:
        """The shortest wall time in which either limit could be reached from here."""
        wait = float("inf")
        if self.cpu_seconds:  # CPU seconds left before re-arming, at most _cpus per second
            wait = (self._soft - used - self.cpu_seconds) / self._cpus
        if self.memory_soft:
            wait = min(wait, (self.memory_soft - peak) / MAX_RSS_GROWTH)
        return wait

    def arm(self) -> None:
        if self.cpu_seconds:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            self._arm(usage.ru_utime + usage.ru_stime)
        self.next_reading = 0.0

    def _arm(self, used: float) -> None:
        if self._soft - used >= self.cpu_seconds:
            return
        soft = int(used) + 2 + self.cpu_seconds
        kill = soft + CPU_ANSWER_GRACE if self.warn else soft
        if self._hard != resource.RLIM_INFINITY:
            kill = min(kill, self._hard)
            soft = min(soft, kill)
        resource.setrlimit(resource.RLIMIT_CPU, (kill, self._hard))
        if self.warn:
            signal.setitimer(signal.ITIMER_PROF, max(soft - used, 0.001))
        self._soft = soft


def current_rss() -> int:
    return int(psutil.Process().memory_info().rss)


def over_soft_limit(limit: int) -> int:
    """The current RSS when it is above `limit`, else 0 (peak RSS first: one system call)."""
    return _rss_above(limit, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def _rss_above(limit: int, peak: int) -> int:
    """The current RSS when above `limit`; the peak can only be higher, so a peak below the
    limit settles it without reading the current value."""
    if not limit or peak < limit:
        return 0
    rss = current_rss()
    return rss if rss >= limit else 0
