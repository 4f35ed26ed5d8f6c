"""The jobs' state in PostgreSQL (prefork.cron_job, prefork.cron_run) and the SQL on it.

Claiming: a cron worker selects one due job `FOR UPDATE SKIP LOCKED` on its lock connection
and keeps that transaction open while the job runs on another connection, so any number of
workers on any number of hosts run each due slot once, and none waits on another's lock (no
lock errors, no noise). The row is updated and the lock released in one commit at the end.
That open transaction is the job's lease (lease.py): if the worker dies, freezes or loses
the network, PostgreSQL ends its session (at once, or after the lease length), the lock goes,
the slot is still due, and another worker runs it again: at least once.

Every attempt (a prefork.cron_run row) ends with a status: ok, failed, timeout or lost. An
attempt still unfinished when its job is claimed again is an orphan (no live worker can hold
it: the claimer holds the row lock) and is closed as lost then. A slot that already lost
MAX_ATTEMPTS attempts is not started again; it is counted as a failure and moved on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from prefork.cron.registry import Job
from prefork.cron.schedule import Schedule

CHANNEL = "prefork_cron"
SYNC_LOCK_KEY = 0x70726566_63726F6E  # "prefcron"
MAX_ATTEMPTS = 2
MAX_RETRY_DELAY = 3600.0
HELD_RECHECK = 10.0  # seconds: how soon an idle worker looks again at a job another holds


@dataclass
class Claim:
    name: str
    schedule: Schedule
    slot: datetime
    now: datetime
    failures: int
    first_failure: datetime | None
    run_id: int = 0
    done: bool = False  # finished, by the runner or by its timeout timer
    committing: bool = False  # its lease confirmed, its job's transaction committing


@dataclass(frozen=True)
class Policy:
    """What the settings say about failures and missed slots."""

    max_failures: int
    failure_window: float
    retry_delay: float
    catch_up: bool


def sync_jobs(conn: Any, jobs: Iterable[Job], *, complete: bool = True) -> None:
    """Make the table match the declared jobs: add new ones, apply schedule and priority
    changes and, when `jobs` is the complete set, mark the ones no longer declared (they
    stop running, their history stays)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SYNC_LOCK_KEY,))
        now = conn.execute("SELECT now()").fetchone()[0]
        known = {
            row[0]: (row[1], row[2], row[3])
            for row in conn.execute(
                "SELECT name, schedule, priority, declared FROM prefork.cron_job"
            )
        }
        declared = set()
        for job in jobs:
            declared.add(job.name)
            schedule = str(job.schedule)
            current = known.get(job.name)
            if current is None:
                conn.execute(
                    "INSERT INTO prefork.cron_job (name, schedule, priority, next_run) "
                    "VALUES (%s, %s, %s, %s)",
                    (job.name, schedule, job.priority, job.schedule.next_after(now)),
                )
            elif current[0] != schedule:
                conn.execute(
                    "UPDATE prefork.cron_job SET schedule = %s, priority = %s, "
                    "declared = true, next_run = %s WHERE name = %s",
                    (schedule, job.priority, job.schedule.next_after(now), job.name),
                )
            elif current[1:] != (job.priority, True):
                conn.execute(
                    "UPDATE prefork.cron_job SET priority = %s, declared = true WHERE name = %s",
                    (job.priority, job.name),
                )
        gone = [name for name, row in known.items() if row[2] and name not in declared]
        if gone and complete:
            conn.execute(
                "UPDATE prefork.cron_job SET declared = false WHERE name = ANY(%s)", (gone,)
            )


def claim_due(lock_conn: Any, unknown: Iterable[str] = ()) -> Claim | None:
    """Lock one due job, except those this process does not declare (another host's code);
    the transaction stays open until finish()."""
    row = lock_conn.execute(
        "SELECT name, schedule, next_run, now(), failures, first_failure "
        "FROM prefork.cron_job WHERE active AND declared AND next_run <= now() "
        "AND name <> ALL(%s) ORDER BY priority, next_run LIMIT 1 FOR UPDATE SKIP LOCKED",
        (list(unknown),),
    ).fetchone()
    if row is None:
        lock_conn.rollback()
        return None
    return Claim(row[0], Schedule.from_text(row[1]), row[2], row[3], row[4], row[5])


ORPHAN = (
    "its worker stopped renewing the lease before the attempt finished (it died, "
    "froze, or lost the database); found unfinished when the job was claimed again"
)


def start_run(job_conn: Any, claim: Claim, worker: str) -> bool:
    """Close the job's orphaned attempts as lost and record this one (committed at once);
    False when this slot already lost MAX_ATTEMPTS attempts."""
    # One round trip; job_conn commits each statement. The count reads the snapshot from
    # before the sweep: the orphans closed now are counted as unfinished.
    row = job_conn.execute(
        "WITH orphans AS (UPDATE prefork.cron_run SET finished_at = clock_timestamp(), "
        "status = 'lost', error = %s WHERE job = %s AND finished_at IS NULL) "
        "INSERT INTO prefork.cron_run (job, slot, worker) SELECT %s, %s, %s "
        "WHERE (SELECT count(*) FROM prefork.cron_run WHERE job = %s AND slot = %s "
        "AND (finished_at IS NULL OR status = 'lost')) < %s RETURNING id",
        (ORPHAN, claim.name, claim.name, claim.slot, worker, claim.name, claim.slot, MAX_ATTEMPTS),
    ).fetchone()
    if row is None:
        return False
    claim.run_id = row[0]
    return True


@dataclass(frozen=True)
class Outcome:
    status: str  # ok, failed, timeout, lost
    duration: float
    error: str = ""


def finish(lock_conn: Any, claim: Claim, outcome: Outcome, policy: Policy) -> str | None:
    """Reschedule the job, record the run, commit (releasing the lock). Returns an alert
    when the job was deactivated."""
    plan = next_state(claim, outcome, policy)
    error = outcome.error or None
    lock_conn.execute(  # both tables in one statement; run_id 0 (none started): no run
        "WITH job AS (UPDATE prefork.cron_job SET next_run = %s, last_run = %s, "
        "last_status = %s, last_duration = %s, last_error = %s, failures = %s, "
        "first_failure = %s, active = active AND %s, runs = runs + 1 WHERE name = %s) "
        "UPDATE prefork.cron_run SET finished_at = clock_timestamp(), status = %s, "
        "duration = %s, error = %s WHERE id = %s",
        (
            plan["next_run"],
            claim.now,
            outcome.status,
            outcome.duration,
            error,
            plan["failures"],
            plan["first_failure"],
            plan["active"],
            claim.name,
            outcome.status,
            outcome.duration,
            error,
            claim.run_id,
        ),
    )
    lock_conn.commit()
    if plan["active"]:
        return None
    return (
        f"cron job {claim.name!r} deactivated after {plan['failures']} consecutive "
        f"failures since {plan['first_failure']:%Y-%m-%d %H:%M:%S}; last: "
        f"{outcome.status} {outcome.error.strip().splitlines()[-1] if outcome.error else ''}"
    ).rstrip()


def record_run(conn: Any, claim: Claim, outcome: Outcome) -> None:
    """Close the attempt alone, on any connection: its lease is gone, so the job's row is
    another worker's to update."""
    conn.execute(
        "UPDATE prefork.cron_run SET finished_at = coalesce(finished_at, "
        "clock_timestamp()), status = %s, duration = %s, error = %s WHERE id = %s",
        (outcome.status, outcome.duration, outcome.error or None, claim.run_id),
    )


def next_state(claim: Claim, outcome: Outcome, policy: Policy) -> dict[str, Any]:
    """Pure: the next run, the failure count and whether the job stays active."""
    following = claim.schedule.next_slot(claim.slot, claim.now, policy.catch_up)
    if outcome.status == "ok":
        return {"next_run": following, "failures": 0, "first_failure": None, "active": True}
    failures = claim.failures + 1
    first = claim.first_failure or claim.now
    next_run = following
    if outcome.status == "failed":  # an exception: retried sooner, with back-off
        delay = min(policy.retry_delay * 2 ** (failures - 1), MAX_RETRY_DELAY)
        next_run = min(following, claim.now + timedelta(seconds=delay))
    # A timeout or a lost slot goes to its next slot: never retried in a loop.
    failing_for = (claim.now - first).total_seconds()
    active = not (failures >= policy.max_failures and failing_for >= policy.failure_window)
    return {"next_run": next_run, "failures": failures, "first_failure": first, "active": active}


def trigger(conn: Any, name: str) -> bool:
    """Make a job due now and wake the cron workers; False when there is no such job."""
    with conn.transaction():
        row = conn.execute(
            "UPDATE prefork.cron_job SET next_run = now() WHERE name = %s RETURNING name", (name,)
        ).fetchone()
        if row is not None:
            conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, name))
    return row is not None


def set_active(conn: Any, name: str, active: bool) -> bool:
    with conn.transaction():
        row = conn.execute(
            "UPDATE prefork.cron_job SET active = %s, failures = CASE WHEN %s THEN 0 "
            "ELSE failures END, first_failure = CASE WHEN %s THEN NULL ELSE first_failure END "
            "WHERE name = %s RETURNING name",
            (active, active, active, name),
        ).fetchone()
        if row is not None and active:
            conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, name))
    return row is not None


def list_jobs(conn: Any) -> list[dict[str, Any]]:
    cursor = conn.execute(
        "SELECT name, schedule, next_run, last_run, last_status, last_duration, failures, "
        "active, declared, priority, runs, last_error FROM prefork.cron_job "
        "ORDER BY priority, name"
    )
    columns = [c.name for c in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor]


def seconds_to_next(conn: Any, unknown: Iterable[str] = ()) -> float | None:
    """Seconds until the next job this worker could claim; None when there is none.

    A job another worker is running (its row locked FOR UPDATE) is passed over: it is due,
    so counting it would wake this worker at once, again and again, for as long as the job
    runs. FOR KEY SHARE SKIP LOCKED skips exactly such rows, and the lock it takes itself
    ends with the rollback below (a claim meanwhile passes that row by, but this worker,
    having seen it due, claims it next). Such a held job is looked at again within
    HELD_RECHECK seconds all the same: its lease may end (its worker frozen or gone), and
    nothing announces that."""
    row = conn.execute(
        "SELECT (SELECT extract(epoch FROM next_run - now()) FROM prefork.cron_job "
        "WHERE active AND declared AND name <> ALL(%s) ORDER BY next_run "
        "LIMIT 1 FOR KEY SHARE SKIP LOCKED), EXISTS (SELECT 1 FROM prefork.cron_job "
        "WHERE active AND declared AND name <> ALL(%s) AND next_run <= now())",
        (list(unknown), list(unknown)),
    ).fetchone()
    conn.rollback()
    seconds = None if row[0] is None else max(0.0, float(row[0]))
    if row[1] and seconds != 0.0:  # a due job, held by another worker
        return HELD_RECHECK if seconds is None else min(seconds, HELD_RECHECK)
    return seconds
