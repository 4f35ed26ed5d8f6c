"""The loop every cron worker runs (a process in multi-processing mode, a thread in threaded
mode): claim a due job, run it in its own transaction, reschedule it; sleep until the next
due job, a NOTIFY, or cron_poll_interval.

Three connections per runner: `lock` holds the claimed row's lock for the job's duration
(the job's lease, renewed by a thread: lease.py), `job` runs the job's transaction, `listen`
waits for NOTIFY. A job that runs past limit_time_real_cron is recorded as a timeout by a
timer thread on the lock connection (rescheduled to its next slot, counted as a failure)
before the runner's owner stops it. A job's transaction commits only after its lease is
confirmed: a worker that lost its lease (frozen past it, cut off) rolls its job back, since
another worker may have run the slot meanwhile, and records the attempt as lost.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, Protocol

import psycopg
from psycopg.pq import TransactionStatus

from prefork import metrics
from prefork.config import Settings
from prefork.cron.lease import (
    Lease,
    bound_idle_in_transaction,
    lease_seconds,
    set_session_timeouts,
)
from prefork.cron.registry import REGISTRY, Job
from prefork.cron.store import (
    CHANNEL,
    Claim,
    Outcome,
    Policy,
    claim_due,
    finish,
    record_run,
    seconds_to_next,
    start_run,
    sync_jobs,
)
from prefork.db import roles
from prefork.db.errors import one_line
from prefork.quiet_log import QuietLog
from prefork.usercode import import_user_module

log = logging.getLogger("prefork.cron")

WAIT_SLICE = 1.0  # seconds: the longest the loop waits without checking stop / beating
RECONNECT_DELAY = 2.0


class CronHooks(Protocol):
    """What the owner of a runner (process or thread) does around jobs."""

    def beat(self) -> None: ...
    def job_started(self, name: str) -> None: ...
    def job_finished(self, name: str) -> None: ...
    def timed_out(self, name: str) -> None: ...
    def progress(self, name: str, text: str) -> None: ...


class JobContext:
    """What a job function receives."""

    def __init__(
        self, conn: Any, name: str, report: Callable[[str], None], settings: Settings | None = None
    ) -> None:
        self.conn = conn
        self.name = name
        self.settings = settings  # the server's configuration
        self.log = logging.getLogger(f"prefork.cron.job.{name}")
        self._report = report

    def progress(self, text: str) -> None:
        """Say how far the job is (shown by `prefork status` while it runs)."""
        self._report(text)


BUILTIN_JOBS = ("prefork.sessions.jobs",)  # prefork's own: the session files' clean-up


def job_modules(settings: Settings) -> tuple[str, list[str]]:
    """The setting the user's job modules come from, and the modules: cron_jobs, else the
    application's module."""
    modules = [m.strip() for m in settings.cron_jobs.split(",") if m.strip()]
    if modules:
        return "cron_jobs", modules
    return "app", [settings.app.split(":", 1)[0] if settings.app else "prefork.demo.app"]


def load_jobs(settings: Settings) -> dict[str, Job]:
    """Import the modules that declare jobs, and prefork's own."""
    what, modules = job_modules(settings)
    for module in BUILTIN_JOBS:
        importlib.import_module(module)
    for module in modules:
        import_user_module(module, what)
    return dict(REGISTRY)


def cron_limits(settings: Settings) -> tuple[int, int]:
    """(wall-clock, CPU) seconds per job; 0 = none."""
    real = settings.limit_time_real_cron
    real = settings.limit_time_real if real < 0 else real
    cpu = settings.limit_time_cpu_cron
    return real, real if cpu < 0 else cpu


def policy_of(settings: Settings) -> Policy:
    return Policy(
        settings.cron_max_failures,
        settings.cron_failure_window,
        settings.cron_retry_delay,
        settings.cron_catch_up,
    )


class CronRunner:
    def __init__(
        self,
        conninfo: str,
        settings: Settings,
        jobs: dict[str, Job],
        worker: str,
        hooks: CronHooks,
        should_stop: Callable[[], bool],
    ) -> None:
        self.conninfo = conninfo
        self.settings = settings
        self.jobs = jobs
        self.worker = worker
        self.hooks = hooks
        self.should_stop = should_stop
        self.policy = policy_of(settings)
        self.limit = cron_limits(settings)[0]
        self.lease_length = lease_seconds(self.limit)
        self.poll = settings.cron_poll_interval
        self._finishing = threading.Lock()
        self._conns: dict[str, psycopg.Connection[Any]] = {}
        self.unknown: set[str] = set()  # due jobs declared elsewhere: left to their hosts
        self._unavailable = QuietLog(log)

    # -- connections ------------------------------------------------------------------------

    def connect(self) -> None:
        if self._conns:
            return
        try:
            for role in ("lock", "job", "listen"):
                self._conns[role] = roles.connect(
                    self.conninfo, roles.CRON, autocommit=role != "lock"
                )
            self._conns["listen"].execute(f"LISTEN {CHANNEL}")
            self._set_timeouts()
        except psycopg.Error:
            self.close()  # none half-open: the next attempt starts afresh
            raise

    def _set_timeouts(self) -> None:
        """PostgreSQL ends an unrenewed lease; with a job limit, also a frozen worker's job
        transaction (and its row locks), which a healthy job never keeps idle that long."""
        set_session_timeouts(self._conns["lock"], idle_in_transaction=self.lease_length)
        if self.limit:
            set_session_timeouts(
                self._conns["job"],
                idle_in_transaction=self.lease_length,
                statement=self.lease_length,
            )

    def close(self) -> None:
        conns, self._conns = self._conns, {}
        for conn in conns.values():
            try:
                conn.close()
            except psycopg.Error:
                pass

    def sync(self, *, complete: bool = True) -> None:
        """Write the declared jobs to the table (every runner may; it is idempotent)."""
        with roles.connect(self.conninfo, roles.CRON) as conn:
            sync_jobs(conn, self.jobs.values(), complete=complete)

    # -- the loop ---------------------------------------------------------------------------

    def serve(self, *, sync: bool = True) -> None:
        """Run due jobs until should_stop(); with `sync`, first write the declared jobs to the
        table. A database that is away (at start too) is waited for, never a crash."""
        while not self.should_stop():
            try:
                self.connect()
                if sync:
                    self.sync()
                    sync = False
                while not self.should_stop() and self.run_one() is not None:
                    pass
                if not self.should_stop():
                    self._wait()
            except psycopg.OperationalError as exc:
                self._database_lost(exc)
        self.close()

    def _database_lost(self, exc: Exception) -> None:
        self.close()
        self._unavailable.warning(
            "%s: database unavailable, retrying: %s", self.worker, one_line(exc)
        )
        deadline = time.monotonic() + RECONNECT_DELAY
        while not self.should_stop() and time.monotonic() < deadline:
            self.hooks.beat()
            time.sleep(min(0.2, WAIT_SLICE))

    def _wait(self) -> None:
        """Until a job is due, a NOTIFY arrives or cron_poll_interval passes."""
        due_in = seconds_to_next(self._conns["lock"], self.unknown)
        bound = self.poll if due_in is None else min(due_in, self.poll)
        deadline = time.monotonic() + bound
        listen = self._conns["listen"]
        while not self.should_stop():
            self.hooks.beat()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            for _ in listen.notifies(timeout=min(WAIT_SLICE, remaining), stop_after=1):
                return

    def run_one(self) -> str | None:
        """Claim one due job and run it (or pass it by); its name, None when none is due."""
        self.connect()  # again after a lost lease
        lock = self._conns["lock"]
        claim = claim_due(lock, self.unknown)
        if claim is None:
            return None
        if claim.name not in self.jobs:  # declared by another host's code, not ours
            lock.rollback()
            self.unknown.add(claim.name)
        elif not start_run(self._conns["job"], claim, self.worker):
            self._finish(
                claim,
                Outcome(
                    "lost",
                    0.0,
                    "this slot already lost its attempts "
                    "(workers that died or lost their "
                    "lease); not started again",
                ),
            )
        else:
            self._run_leased(claim)
        return claim.name

    def _run_leased(self, claim: Claim) -> None:
        lease = Lease(self._conns["lock"], self.lease_length, self._finishing)
        lease.start()
        try:
            self._finish(claim, self._execute(claim, lease), lease)
        finally:
            lease.stop()
        if lease.lost:
            self.close()  # the lock connection is gone; the next claim reconnects

    def _execute(self, claim: Claim, lease: Lease) -> Outcome:
        job = self.jobs[claim.name]
        timer = None
        if self.limit:
            timer = threading.Timer(self.limit, self._timed_out, (claim, lease, time.monotonic()))
            timer.daemon = True
            timer.start()
        self.hooks.job_started(claim.name)
        started = time.monotonic()
        conn = self._conns["job"]
        try:
            with conn.transaction():
                job.function(
                    JobContext(
                        conn,
                        claim.name,
                        lambda text: self.hooks.progress(claim.name, text),
                        self.settings,
                    )
                )
                self._fence(claim, conn, lease)
            return Outcome("ok", time.monotonic() - started)
        except LeaseLost as exc:
            return self._not_committed(claim, time.monotonic() - started, str(exc))
        except Exception:
            text = traceback.format_exc()
            lost = self._confirm(claim, lease)  # the error may be the lease's end itself
            if lost:
                return self._not_committed(claim, time.monotonic() - started, lost)
            log.error("cron job %r failed; rolled back:\n%s", claim.name, text.rstrip())
            return Outcome("failed", time.monotonic() - started, text)
        finally:
            if timer is not None:
                timer.cancel()
            self.hooks.job_finished(claim.name)

    def _fence(self, claim: Claim, conn: Any, lease: Lease) -> None:
        """Raise LeaseLost unless the lease still holds, just before the job commits. The
        job's session is bounded first: if this worker froze between the check and its
        commit, PostgreSQL ends that session before the lease (whose timer starts later),
        so no other worker can have run the slot by the time a commit goes through."""
        bound_idle_in_transaction(conn, self.lease_length)
        with self._finishing:
            lost = "its timeout was recorded" if claim.done else lease.confirm()
            claim.committing = not lost  # from here on, the timer leaves the outcome to us
        if lost:
            raise LeaseLost(lost)

    def _confirm(self, claim: Claim, lease: Lease) -> str:
        with self._finishing:
            return "its timeout was recorded" if claim.done else lease.confirm()

    def _not_committed(self, claim: Claim, elapsed: float, why: str) -> Outcome:
        if claim.done:  # recorded as a timeout meanwhile: stopped, so not committed
            return Outcome("timeout", elapsed)
        return self._lost(claim, elapsed, why)

    def _lost(self, claim: Claim, elapsed: float, why: str) -> Outcome:
        log.error(
            "cron job %r lost its lease after %.1fs (%s); rolled back, not committed: "
            "another worker may run its slot",
            claim.name,
            elapsed,
            why,
        )
        return Outcome("lost", elapsed, f"lease lost: {why}; rolled back, not committed")

    def _finish(self, claim: Claim, outcome: Outcome, lease: Lease | None = None) -> bool:
        with self._finishing:
            if claim.done:
                return False
            claim.done = True
            alert = self._settle(claim, outcome, lease)
        counters = metrics.current()
        if counters is not None:
            counters.cron_runs.labels(claim.name, outcome.status).inc()
            counters.cron_duration.labels(claim.name).observe(outcome.duration)
        if alert:
            log.error("ALERT %s", alert)
        return True

    def _settle(self, claim: Claim, outcome: Outcome, lease: Lease | None) -> str | None:
        """Reschedule the job and close its attempt; only the attempt when the lease is
        gone (the job's row is then another worker's). Called with the guard."""
        if lease is None:  # no attempt started: nothing to renew, nothing to fence
            return finish(self._conns["lock"], claim, outcome, self.policy)
        lease.stop()
        if lease.lost:
            self._record_run(claim, outcome)
            return None
        try:
            return finish(self._conns["lock"], claim, outcome, self.policy)
        except psycopg.Error as exc:
            lease.lost = f"its lock connection failed: {one_line(exc)}"
        log.error(
            "cron job %r: %s; not rescheduled, its slot may run again", claim.name, lease.lost
        )
        self._record_run(
            claim,
            Outcome(
                outcome.status,
                outcome.duration,
                (f"{outcome.error}\n" if outcome.error else "") + f"not rescheduled ({lease.lost}):"
                " its slot may run again",
            ),
        )
        return None

    def _record_run(self, claim: Claim, outcome: Outcome) -> None:
        """The attempt's status without its lease: on the job connection when it is idle,
        else on a new one (the job may still be running: a timeout; PostgreSQL may have
        ended the job's session with the lease)."""
        job = self._conns["job"]
        try:
            if not job.closed and job.info.transaction_status == TransactionStatus.IDLE:
                record_run(job, claim, outcome)
                return
        except psycopg.Error:
            pass
        try:
            with roles.connect(self.conninfo, roles.CRON, autocommit=True) as conn:
                record_run(conn, claim, outcome)
        except psycopg.Error as exc:  # the next claim of the job closes it as lost
            log.warning(
                "cron job %r: its attempt could not be recorded: %s", claim.name, one_line(exc)
            )

    def _timed_out(self, claim: Claim, lease: Lease, started: float) -> None:
        elapsed = time.monotonic() - started
        with self._finishing:
            if claim.done or claim.committing:  # finished, or finishing, meanwhile
                return
            lost = lease.confirm()  # a worker resumed past its lease: the job is not its own
        if lost:
            outcome = self._lost(claim, elapsed, lost)
        else:
            outcome = Outcome(
                "timeout", elapsed, f"ran {elapsed:.1f}s > limit_time_real_cron {self.limit}s"
            )
        if not self._finish(claim, outcome, lease):
            return
        if not lost:
            log.error(
                "cron job %r stopped: %s; rescheduled for its next slot", claim.name, outcome.error
            )
        self.hooks.timed_out(claim.name)


class LeaseLost(Exception):
    """The job's lease ended before its transaction could commit."""
