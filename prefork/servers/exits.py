"""Why a worker exited: classification from its exit status, and the record kept of it."""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass, field
from enum import StrEnum

from prefork.ops.state import ExitRow
from prefork.servers.kinds import WorkerLimits
from prefork.workers import exitcodes
from prefork.workers.scoreboard import SlotView

log = logging.getLogger("prefork.master")

MiB = 1 << 20


class ExitReason(StrEnum):
    """Why a process exited, as logs, `prefork status`, the dashboard and the
    prefork_worker_exits_total metric name it."""

    STOPPED = "stopped"  # told to stop
    RELOAD = "reload"  # told to stop, replaced by a newer generation
    CRASH = "crash"
    BOOT_FAILED = "boot-failed"  # raised before it was ready
    BOOT_TIMEOUT = "boot-timeout"  # not ready within limit_time_real
    CPU_TIME = "cpu-time"
    REAL_TIME = "real-time"
    MEMORY_SOFT = "memory-soft"  # recycled itself after a request
    MEMORY_HARD = "memory-hard"
    REQUEST_LIMIT = "request-limit"
    CRON_LIFETIME = "cron-lifetime"
    CRON_TIMEOUT = "cron-timeout"
    STOP_TIMEOUT = "stop-timeout"  # still running at the end of a graceful stop


# Exits that are the normal life of a process: logged at INFO.
ROUTINE = frozenset(
    {ExitReason.STOPPED, ExitReason.RELOAD, ExitReason.REQUEST_LIMIT, ExitReason.CRON_LIFETIME}
)


@dataclass
class ExitRecord:
    """One worker exit, as logged and as shown by `prefork status` and the dashboard."""

    pid: int
    role: str
    reason: ExitReason
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

    def as_row(self) -> ExitRow:
        return ExitRow(
            pid=self.pid,
            role=self.role,
            reason=str(self.reason),
            detail=self.detail,
            request=self.request,
            error=self.error,
            at=self.at,
        )


@dataclass
class KillOrder:
    """Why the master itself killed a worker; it overrides the exit status."""

    reason: ExitReason
    detail: str


def mib(value: int) -> str:
    return f"{value / MiB:.1f} MiB"


def classify(
    status: int, view: SlotView, order: KillOrder | None, limits: WorkerLimits, replacing: bool
) -> tuple[ExitReason, str]:
    """(reason, detail) of an exit, from what the master ordered and what the status says,
    judged by the limits the process was forked with."""
    if order is not None:
        return order.reason, order.detail
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        if signum == signal.SIGXCPU:
            return ExitReason.CPU_TIME, f"CPU time above limit {limits.time_cpu}s"
        return ExitReason.CRASH, f"killed by signal {signal.Signals(signum).name}"
    code = os.WEXITSTATUS(status)
    if code == exitcodes.STOPPED:
        return (ExitReason.RELOAD if replacing else ExitReason.STOPPED), ""
    return _by_code(code, view, limits)


def _by_code(code: int, view: SlotView, limits: WorkerLimits) -> tuple[ExitReason, str]:
    """The exit codes a process chooses itself (prefork.workers.exitcodes)."""
    if code == exitcodes.MEMORY_SOFT:
        return (ExitReason.MEMORY_SOFT, f"RSS {mib(view.value)} > limit {mib(limits.memory_soft)}")
    if code == exitcodes.MEMORY_HARD:
        return ExitReason.MEMORY_HARD, "an allocation failed under the address-space backstop"
    if code == exitcodes.CPU_TIME:
        return ExitReason.CPU_TIME, f"CPU time above limit {limits.time_cpu}s"
    if code == exitcodes.REAL_TIME:
        return ExitReason.REAL_TIME, "request stopped at limit_time_real"
    if code == exitcodes.MEMORY_RSS:
        return ExitReason.MEMORY_HARD, f"RSS above limit {mib(limits.memory_hard)}"
    if code == exitcodes.REQUEST_LIMIT:
        return ExitReason.REQUEST_LIMIT, f"served {view.value} requests"
    if code == exitcodes.CRON_LIFETIME:
        return (ExitReason.CRON_LIFETIME, f"lived limit_time_worker_cron ({limits.lifetime}s)")
    if code == exitcodes.CRON_TIMEOUT:
        return (
            ExitReason.CRON_TIMEOUT,
            "job ran past limit_time_real_cron (recorded, rescheduled)",
        )
    if code == exitcodes.BOOT_FAILED:
        return ExitReason.BOOT_FAILED, last_line(view.error)
    return ExitReason.CRASH, f"exit code {code}"


def last_line(error: str) -> str:
    """A traceback's last line, the exception and its message; "" for no traceback."""
    lines = error.strip().splitlines()
    return lines[-1] if lines else ""


def exit_record(
    pid: int,
    role: str,
    status: int,
    view: SlotView,
    order: KillOrder | None,
    limits: WorkerLimits,
    replacing: bool,
) -> ExitRecord:
    """The record of an exit, from the status and the slot it left (read before release)."""
    reason, detail = classify(status, view, order, limits, replacing)
    if view.request_started:
        request = view.request_line
    else:  # a worker that recycled itself names the request that decided it
        memory = (ExitReason.MEMORY_SOFT, ExitReason.MEMORY_HARD)
        request = view.exit_line if reason in memory else ""
    crashed = reason in (ExitReason.CRASH, ExitReason.BOOT_FAILED)
    return ExitRecord(pid, role, reason, detail, request, view.error if crashed else "")


def log_exit(record: ExitRecord) -> None:
    if record.reason in ROUTINE:
        log.info("%s", record.log_line())
    elif record.reason is ExitReason.MEMORY_SOFT:
        log.warning("%s", record.log_line())
    elif record.error and record.reason is ExitReason.CRASH:
        log.error("%s; last traceback:\n%s", record.log_line(), record.error.rstrip())
    else:
        log.error("%s", record.log_line())
