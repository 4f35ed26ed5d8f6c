"""The master's watch over the embedded PostgreSQL it started: found dead, it is started
again with back-off (FIRST_DELAY, doubling up to MAX_DELAY; back to FIRST_DELAY once it has
stayed up STABLE_AFTER), each death and start logged and alerted.

The master's loop calls poll() every turn; it looks at most every CHECK_INTERVAL, by reading
postmaster.pid and looking at its process (no connection). The start is `pg_ctl -w start` in
a child process that the master reaps: a start after a crash replays the WAL, which can take
long, and the workers are supervised meanwhile. Workers' pools need nothing: they drop the
connections the dead server broke and connect again on the next request.

Only a server this master started is watched (never one named by db_host or db_uri), and
only while the master serves: not while it stops, nor once it has handed over to a new
master (USR2), which found the server running at its start and watches it from then on.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections import deque
from typing import Literal

from prefork.db.embedded import EmbeddedError, EmbeddedPostgres
from prefork.db.startup import DatabaseRuntime
from prefork.servers.health import Alert

log = logging.getLogger("prefork.db")

CHECK_INTERVAL = 1.0
FIRST_DELAY = 1.0
MAX_DELAY = 60.0
STABLE_AFTER = 60.0  # seconds up after which a death is not counted as part of a series
ALERT_KIND = "database-down"

Phase = Literal["running", "waiting", "starting"]
AlertEvents = list[tuple[str, Alert]]


class Backoff:
    """The delay before each start of a series of deaths and failed starts."""

    def __init__(self) -> None:
        self.attempts = 0  # starts since the server last stayed up STABLE_AFTER
        self.up_since = 0.0

    def next_delay(self) -> float:
        delay = min(FIRST_DELAY * 2.0 ** min(self.attempts, 16), MAX_DELAY)  # no overflow
        self.attempts += 1
        return delay

    def up(self, now: float) -> None:
        self.up_since = now

    def still_up(self, now: float) -> None:
        if now - self.up_since >= STABLE_AFTER:
            self.attempts = 0


class EmbeddedSupervisor:
    @classmethod
    def of(cls, database: DatabaseRuntime | None, alert_window: int) -> EmbeddedSupervisor | None:
        """The supervisor of the embedded PostgreSQL `database` started, if it did."""
        if database is None or database.embedded is None:
            return None
        return cls(database.embedded, alert_window)

    def __init__(self, embedded: EmbeddedPostgres, alert_window: int) -> None:
        self.embedded = embedded
        self.alert_window = alert_window
        self.pid = embedded.postmaster_pid() or 0
        self.phase: Phase = "running"
        self.restarts = 0  # successful starts since the master started
        self.alert: Alert | None = None
        self.backoff = Backoff()
        self.backoff.up(time.monotonic())
        self._next_check = 0.0
        self._start_at = 0.0
        self._starter: subprocess.Popen[bytes] | None = None
        self._log_offset = embedded.log_size()  # read back from there for a death or a failure
        self._deaths: deque[float] = deque()  # time.time() of each, within alert_window

    def poll(self, now: float) -> AlertEvents:
        """From the master's loop: look at the server, or start it when its delay is over."""
        if self.phase == "running" and now >= self._next_check:
            self._next_check = now + CHECK_INTERVAL
            return self._check(now)
        if self.phase == "waiting" and now >= self._start_at:
            return self._start(now)
        return []

    def owns(self, pid: int) -> bool:
        """Whether `pid` is the pg_ctl this supervisor started (the master reaps it)."""
        return self._starter is not None and self._starter.pid == pid

    def reaped(self, status: int, now: float) -> AlertEvents:
        """The pg_ctl started by _start() exited with `status` (as os.waitpid gives it)."""
        code = self._forget_starter(status)
        pid = self.embedded.postmaster_pid()
        if pid:  # also when pg_ctl gave up waiting on a server still replaying its WAL
            self.restarts += 1
            log.warning(
                "embedded PostgreSQL started again (pid %d; %d restart(s) since the "
                "master started)",
                pid,
                self.restarts,
            )
            return self._running(pid, now)
        reason = self.embedded.log_since(self._log_offset) or f"pg_ctl exit status {code}"
        self._retry(now, f"the embedded PostgreSQL did not start: {reason}")
        return []

    def settle(self) -> None:
        """Before the master exits: wait for a start in progress, so that stopping the
        server finds it (pg_ctl gives up by itself after its timeout)."""
        if self._starter is None:
            return
        try:
            _, status = os.waitpid(self._starter.pid, 0)
        except ChildProcessError:
            status = 0
        self._forget_starter(status)

    def state(self) -> dict[str, object]:
        """For the state file: `prefork status` and the dashboard."""
        return {
            "embedded": True,
            "pid": self.pid if self.phase == "running" else 0,
            "state": self.phase,
            "restarts": self.restarts,
            "log": str(self.embedded.log_file),
        }

    def _check(self, now: float) -> AlertEvents:
        pid = self.embedded.postmaster_pid()
        if pid is None:
            return self._died(now)
        if pid and pid != self.pid:
            log.info("embedded PostgreSQL: now pid %d (restarted outside prefork)", pid)
            self.pid = pid
        self.backoff.still_up(now)
        self._log_offset = self.embedded.log_size()  # what it logs from now on says why it died
        return []

    def _died(self, now: float) -> AlertEvents:
        cause = self.embedded.death_reason(self._log_offset)
        reason = f"embedded PostgreSQL (pid {self.pid}) died: {cause}"
        self._retry(now, reason)
        at = time.time()
        self._deaths.append(at)
        while self._deaths[0] < at - self.alert_window:
            self._deaths.popleft()
        self.alert = Alert(ALERT_KIND, len(self._deaths), self.alert_window, reason, "", at)
        return [("raised", self.alert)]

    def _retry(self, now: float, reason: str) -> None:
        delay = self.backoff.next_delay()
        log.error(
            "%s; starting it again in %g s (its log: %s)", reason, delay, self.embedded.log_file
        )
        self.phase = "waiting"
        self._start_at = now + delay

    def _start(self, now: float) -> AlertEvents:
        pid = self.embedded.postmaster_pid()
        if pid:  # started by someone else meanwhile
            log.warning("embedded PostgreSQL running again (pid %d), not started by prefork", pid)
            return self._running(pid, now)
        self._log_offset = self.embedded.log_size()
        try:
            self._starter = self.embedded.spawn_start()
        except (OSError, EmbeddedError) as exc:
            self._retry(now, f"cannot start the embedded PostgreSQL: {exc}")
            return []
        log.warning("starting the embedded PostgreSQL again (data %s)", self.embedded.pgdata)
        self.phase = "starting"
        return []

    def _running(self, pid: int, now: float) -> AlertEvents:
        self.pid = pid
        self.phase = "running"
        self._next_check = now + CHECK_INTERVAL
        self.backoff.up(now)
        alert, self.alert = self.alert, None
        return [("cleared", alert)] if alert is not None else []

    def _forget_starter(self, status: int) -> int:
        assert self._starter is not None
        code = os.waitstatus_to_exitcode(status)
        self._starter.returncode = code  # reaped here: subprocess must not wait for it
        self._starter = None
        return code
