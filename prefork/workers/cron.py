"""The cron worker: one process running scheduled jobs, one at a time, at lower CPU priority.

Same contract as the HTTP worker: forked by the master, heartbeat in the scoreboard (beats
while it waits, stops while a job runs), limits per job (limit_time_real_cron by a timer that
records the timeout and exits; limit_time_cpu_cron through RLIMIT_CPU; limit_memory_soft
after each job, limit_memory_hard by the master), ends with os._exit.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from types import FrameType
from typing import NoReturn

from prefork.config import Settings
from prefork.cron.runner import CronRunner, cron_limits, load_jobs
from prefork.usercode import UserImportError
from prefork.workers import exitcodes
from prefork.workers.limits import RequestLimits
from prefork.workers.process import prepare_process, run_to_exit
from prefork.workers.scoreboard import READY, STOPPING, Slot

log = logging.getLogger("prefork.worker")

NICENESS = 19  # the lowest: jobs must not slow requests down


class CronWorker:
    def __init__(self, settings: Settings, number: int, slot: Slot, conninfo: str) -> None:
        self.settings = settings
        self.number = number
        self.slot = slot
        self.conninfo = conninfo
        self.exit_code: int | None = None
        self.jobs_run = 0
        self.limits = RequestLimits(cron_limits(settings)[1], settings.limit_memory_soft)
        self.master_pid = os.getppid()
        self.started = time.monotonic()

    def run(self) -> NoReturn:
        run_to_exit(f"cron worker #{self.number}", self.slot, self._run)

    def _run(self) -> int:
        self.started = time.monotonic()
        self._prepare_process()
        try:
            jobs = load_jobs(self.settings)
        except Exception as exc:
            one_line = isinstance(exc, UserImportError)  # else the traceback is the help
            message = str(exc) if one_line else traceback.format_exc()
            self.slot.set_error(message)
            log.error(
                "cron worker #%d cannot import its jobs:%s%s",
                self.number,
                " " if one_line else "\n",
                message,
            )
            return exitcodes.BOOT_FAILED
        runner = CronRunner(
            self.conninfo,
            self.settings,
            jobs,
            f"{socket.gethostname()} cron worker #{self.number}",
            self,
            self._should_stop,
        )
        self.limits.arm()
        self.slot.set_state(READY)
        runner.serve()
        return self.exit_code if self.exit_code is not None else exitcodes.STOPPED

    def _prepare_process(self) -> None:
        prepare_process(
            f"cron worker #{self.number}", self._on_term, self.settings.limit_memory_hard
        )
        os.nice(NICENESS)

    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        if self.exit_code is None:
            self.exit_code = exitcodes.STOPPED  # seen between jobs and while waiting

    def _should_stop(self) -> bool:
        """Asked between jobs and while waiting, never while a job runs."""
        if os.getppid() != self.master_pid:
            self.exit_code = exitcodes.ORPHANED
        lifetime = self.settings.limit_time_worker_cron
        # Odoo 18 (server.py, the cron loop) recycles a cron worker after this many seconds.
        if lifetime and self.exit_code is None and time.monotonic() - self.started > lifetime:
            self.exit_code = exitcodes.CRON_LIFETIME
            self.slot.set_state(STOPPING)
        return self.exit_code is not None

    # -- hooks of the runner -----------------------------------------------------------------

    def beat(self) -> None:
        self.slot.beat(time.monotonic())

    def job_started(self, name: str) -> None:
        line = f"cron job {name}".encode("latin-1", "replace")
        self.slot.begin_request(time.monotonic(), line)

    def progress(self, name: str, text: str) -> None:
        self.slot.set_line(f"cron job {name}: {text}")

    def job_finished(self, name: str) -> None:
        self.jobs_run += 1
        self.slot.end_request(self.jobs_run, 0.0)
        self.slot.beat(time.monotonic())  # a long series of due jobs is not a silent loop
        rss = self.limits.after_request()
        if rss and self.exit_code is None:
            self.exit_code = exitcodes.MEMORY_SOFT
            self.slot.mark_exit(rss)
            self.slot.set_state(STOPPING)

    def timed_out(self, name: str) -> None:
        """Called on the timer thread once the timeout is recorded: stop the job now."""
        self.slot.mark_exit(0)
        logging.shutdown()
        os._exit(exitcodes.CRON_TIMEOUT)
