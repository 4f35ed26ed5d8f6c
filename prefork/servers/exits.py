"""Why a worker exited: classification from its exit status, and the record kept of it."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from prefork.workers import exitcodes
from prefork.workers.scoreboard import SlotView

MiB = 1 << 20


@dataclass
class ExitRecord:
    """One worker exit, as logged and as shown by `prefork status` and the dashboard."""

    pid: int
    role: str
    reason: str
    detail: str
    request: str
    error: str = ""
    at: float = field(default_factory=time.time)

    def log_line(self) -> str:
        line = f"{self.role} (pid {self.pid}) exited: {self.reason}"
        if self.detail:
            line += f", {self.detail}"
        if self.request:
            line += f", request '{self.request}'"
        return line

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class KillOrder:
    """Why the master itself killed a worker; it overrides the exit status."""

    reason: str
    detail: str


def mib(value: int) -> str:
    return f"{value / MiB:.1f} MiB"


def classify(status: int, view: SlotView, order: KillOrder | None, limits: dict[str, int],
             replacing: bool) -> tuple[str, str]:
    """(reason, detail) of an exit, from what the master ordered and what the status says."""
    if order is not None:
        return order.reason, order.detail
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        if signum == signal.SIGXCPU:
            return "cpu-time", f"CPU time above limit {limits['limit_time_cpu']}s"
        return "crash", f"killed by signal {signal.Signals(signum).name}"
    code = os.WEXITSTATUS(status)
    if code == exitcodes.STOPPED:
        return ("reload" if replacing else "stopped"), ""
    if code == exitcodes.MEMORY_SOFT:
        return "memory-soft", f"RSS {mib(view.value)} > limit {mib(limits['limit_memory_soft'])}"
    if code == exitcodes.MEMORY_HARD:
        return "memory-hard", "an allocation failed under the address-space backstop"
    if code == exitcodes.CPU_TIME:
        return "cpu-time", f"CPU time above limit {limits['limit_time_cpu']}s"
    if code == exitcodes.REAL_TIME:
        return "real-time", "request stopped at limit_time_real"
    if code == exitcodes.MEMORY_RSS:
        return "memory-hard", f"RSS above limit {mib(limits['limit_memory_hard'])}"
    if code == exitcodes.REQUEST_LIMIT:
        return "request-limit", f"served {view.value} requests"
    if code == exitcodes.CRON_LIFETIME:
        lifetime = limits['limit_time_worker_cron']
        return "cron-lifetime", f"lived limit_time_worker_cron ({lifetime}s)"
    if code == exitcodes.CRON_TIMEOUT:
        return "cron-timeout", "job ran past limit_time_real_cron (recorded, rescheduled)"
    if code == exitcodes.BOOT_FAILED:
        return "boot-failed", view.error.strip().splitlines()[-1] if view.error else ""
    return "crash", f"exit code {code}"
