"""Cron in threaded mode: `max_cron_threads` threads run the same loop as cron workers.

The same jobs, the same claiming and the same limits as in multi-processing mode (Odoo's
threaded server runs none of its crons in some set-ups, odoo/odoo#97191). A thread cannot be
stopped from outside: a job past limit_time_real_cron is recorded as a timeout, then the
server reloads the whole process, as it does for a request past limit_time_real.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from prefork.config import Settings
from prefork.cron.runner import CronRunner, load_jobs
from prefork.usercode import UserImportError

log = logging.getLogger("prefork.cron")


class CronImportError(Exception):
    """The modules declaring the jobs could not be imported; the server does not start."""


class CronThreads:
    def __init__(
        self, settings: Settings, conninfo: str, on_timeout: Callable[[str], None]
    ) -> None:
        self.settings = settings
        self.conninfo = conninfo
        self.on_timeout = on_timeout
        self.stopping = False
        self.running: dict[int, str] = {}  # thread id -> job name

    def start(self) -> None:
        count = self.settings.max_cron_threads
        if not count:
            return
        try:
            jobs = load_jobs(self.settings)
        except UserImportError as exc:
            raise CronImportError(str(exc)) from None
        except Exception as exc:
            raise CronImportError(
                f"cannot import the cron jobs ({exc.__class__.__name__}: "
                f"{exc}); check cron_jobs / the application"
            ) from exc
        runners = [
            CronRunner(
                self.conninfo, self.settings, jobs, f"cron thread #{n}", self, lambda: self.stopping
            )
            for n in range(1, count + 1)
        ]
        for number, runner in enumerate(runners, 1):  # the first one writes the job table
            threading.Thread(
                target=runner.serve,
                kwargs={"sync": number == 1},
                name=f"cron-{number}",
                daemon=True,
            ).start()
        log.info("%d cron thread(s) running %d job(s)", count, len(jobs))

    def stop(self) -> None:
        self.stopping = True

    # -- hooks of the runners ----------------------------------------------------------------

    def beat(self) -> None:
        """Threads have no heartbeat to keep: the server's own loop watches requests."""

    def job_started(self, name: str) -> None:
        self.running[threading.get_ident()] = name

    def job_finished(self, name: str) -> None:
        self.running.pop(threading.get_ident(), None)

    def progress(self, name: str, text: str) -> None:
        log.debug("cron job %r: %s", name, text)

    def timed_out(self, name: str) -> None:
        self.on_timeout(name)
