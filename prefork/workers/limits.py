"""Per-process limits applied inside a worker: CPU time per request, the memory backstop."""

from __future__ import annotations

import resource

import psutil

# The address-space backstop sits this far above limit_memory_hard: a request whose RSS
# stays between the soft and the hard limit must always complete (SPEC section 4), and a
# Python process maps much more than it touches (thread stacks, arenas, shared libraries).
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


class CPULimit:
    """RLIMIT_CPU re-armed before each request: the kernel sends SIGXCPU past `seconds`.

    SIGXCPU keeps its default action (terminate), so a runaway request cannot catch it; the
    master reads the signal from the exit status.
    """

    __slots__ = ("_hard", "seconds")

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
        self._hard = resource.getrlimit(resource.RLIMIT_CPU)[1]

    def arm(self) -> None:
        if not self.seconds:
            return
        usage = resource.getrusage(resource.RUSAGE_SELF)
        soft = int(usage.ru_utime + usage.ru_stime) + 1 + self.seconds
        if self._hard != resource.RLIM_INFINITY:
            soft = min(soft, self._hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, self._hard))


def peak_rss() -> int:
    """Highest RSS this process ever had, in bytes: one cheap system call."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss() -> int:
    return int(psutil.Process().memory_info().rss)


def over_soft_limit(limit: int) -> int:
    """The current RSS when it is above `limit`, else 0.

    The peak can only be above the current value, so the common case costs one getrusage.
    """
    if not limit or peak_rss() < limit:
        return 0
    rss = current_rss()
    return rss if rss >= limit else 0
