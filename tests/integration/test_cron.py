"""Scheduled jobs against a real PostgreSQL: cron workers in real prefork processes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from prefork.cron.schedule import Schedule
from tests.integration.conftest import PREFORK, ROOT, Server, ServerFactory

JOBS = ("--app", "tests.apps.dbapp:app", "--cron-jobs", "tests.apps.cronjobs")


def eventually(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not true within {timeout}s")


def query(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(sql, params or None)
        return cursor.fetchall() if cursor.description else []


@pytest.fixture
def cron_db(fresh_database: str) -> str:
    query(
        fresh_database,
        "CREATE TABLE cron_hits (job text, note text, pid integer, "
        "at timestamptz DEFAULT clock_timestamp())",
    )
    return fresh_database


def start(server_factory: ServerFactory, dsn: str, *args: str, **env: str) -> Server:
    server: Server = server_factory.start(*JOBS, "--db-uri", dsn, *args, env=env)
    return server


def registered(dsn: str, count: int) -> bool:
    return bool(query(dsn, "SELECT count(*) FROM prefork.cron_job")[0][0] >= count)


def make_due(dsn: str, pattern: str) -> None:
    query(dsn, "UPDATE prefork.cron_job SET next_run = now() WHERE name LIKE %s", pattern)
    query(dsn, "SELECT pg_notify('prefork_cron', 'test')")


def cli(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PREFORK, "cron", *args, "--db-uri", dsn, "--cron-jobs", "tests.apps.cronjobs"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


# -- schedules and the failure policy (pure) -------------------------------------------------


def test_an_idle_worker_does_not_wait_for_a_job_another_worker_runs(fresh_database: str) -> None:
    """A due job another worker holds (its row locked, as while it runs) is not what an idle
    worker waits for: it would be woken at once, again and again, while the job runs."""
    from prefork.cron.registry import Job
    from prefork.cron.store import HELD_RECHECK, seconds_to_next, sync_jobs
    from prefork.db.schema import migrate_postgres

    def nothing(ctx: Any) -> None:
        pass

    with psycopg.connect(fresh_database) as running, psycopg.connect(fresh_database) as idle:
        migrate_postgres(running)
        sync_jobs(
            running,
            [
                Job("t.busy", Schedule.parse(every="1m"), nothing),
                Job("t.later", Schedule.parse(every="1h"), nothing),
            ],
        )
        running.execute(
            "UPDATE prefork.cron_job SET next_run = now() - interval '1 second' "
            "WHERE name = 't.busy'"
        )
        running.execute(
            "UPDATE prefork.cron_job SET next_run = now() + interval '1 hour' "
            "WHERE name = 't.later'"
        )
        running.commit()
        assert seconds_to_next(idle) == 0.0  # t.busy is due and nobody holds it
        running.execute("SELECT 1 FROM prefork.cron_job WHERE name = 't.busy' FOR UPDATE")
        # Not at once: t.busy is looked at again later (its lease may end), t.later after it
        assert seconds_to_next(idle) == HELD_RECHECK
        query(
            fresh_database,
            "UPDATE prefork.cron_job SET next_run = now() + interval "
            "'1 second' WHERE name = 't.later'",
        )
        waiting = seconds_to_next(idle)
        assert waiting is not None and 0 < waiting <= 1  # t.later's turn comes first
        running.rollback()  # the job finished: the lock is gone
        assert seconds_to_next(idle) == 0.0


# -- cron workers --------------------------------------------------------------------------


def test_two_instances_run_every_due_slot_exactly_once(
    cron_db: str, server_factory: ServerFactory
) -> None:
    many = {"CRONTEST_MANY": "1"}
    servers = [
        start(server_factory, cron_db, "--workers", "1", "--max-cron-threads", "2", **many)
        for _ in range(2)
    ]  # two servers, same database
    eventually(lambda: registered(cron_db, 200))
    make_due(cron_db, "many.%")
    eventually(lambda: query(cron_db, "SELECT count(*) FROM cron_hits")[0][0] >= 200, 60)
    time.sleep(1.0)  # a slot run twice would show up now
    hits = query(cron_db, "SELECT job, count(*) FROM cron_hits GROUP BY job")
    assert len(hits) == 200 and all(count == 1 for _, count in hits)
    workers = query(cron_db, "SELECT DISTINCT pid FROM cron_hits")
    assert len(workers) >= 2  # shared between the workers, not serialised on one
    states = query(
        cron_db, "SELECT DISTINCT last_status FROM prefork.cron_job WHERE name LIKE 'many.%'"
    )
    assert states == [("ok",)]
    for server in servers:  # workers passing each other's locked rows log nothing about it
        assert " ERROR " not in server.log() and "lock" not in server.log().lower()


def test_cli_trigger_wakes_a_worker_through_notify(
    cron_db: str, server_factory: ServerFactory
) -> None:
    server = start(
        server_factory,
        cron_db,
        "--workers",
        "1",
        "--max-cron-threads",
        "1",
        "--cron-poll-interval",
        "60",
    )
    eventually(lambda: registered(cron_db, 1))
    time.sleep(0.5)  # the worker is asleep until its next poll, 60 s away
    triggered = time.monotonic()
    result = cli(cron_db, "run", "quick.mark")
    assert result.returncode == 0, result.stdout + result.stderr
    eventually(lambda: query(cron_db, "SELECT count(*) FROM cron_hits")[0][0] == 1, 10)
    waited = time.monotonic() - triggered
    assert waited < 10, "only NOTIFY explains a run before the 60 s poll"
    listing = cli(cron_db, "list")
    assert "quick.mark" in listing.stdout and " ok " in listing.stdout
    assert server.proc.poll() is None


def test_a_job_over_its_time_limit_is_stopped_counted_and_not_looped(
    cron_db: str, server_factory: ServerFactory
) -> None:
    server = start(
        server_factory,
        cron_db,
        "--workers",
        "1",
        "--max-cron-threads",
        "1",
        "--limit-time-real-cron",
        "2",
    )
    eventually(lambda: registered(cron_db, 1))
    make_due(cron_db, "slow.sleep")
    server.wait_log(r"cron worker #1 \(pid \d+\) exited: cron-timeout", timeout=20)
    assert "cron job 'slow.sleep' stopped: ran 2." in server.log()
    time.sleep(3)  # a looping scheduler would have started it again by now
    runs = query(cron_db, "SELECT status FROM prefork.cron_run WHERE job = 'slow.sleep'")
    assert runs == [("timeout",)]
    ((status, failures, next_run, now),) = query(
        cron_db,
        "SELECT last_status, failures, next_run, now() FROM prefork.cron_job "
        "WHERE name = 'slow.sleep'",
    )
    assert (status, failures) == ("timeout", 1)
    assert next_run > now + timedelta(minutes=50)  # its next slot, an hour on
    eventually(lambda: "spawned cron worker #1" in server.log().split("cron-timeout", 1)[1])


def test_a_failing_job_backs_off_then_is_deactivated_with_an_alert(
    cron_db: str, server_factory: ServerFactory
) -> None:
    server = start(
        server_factory,
        cron_db,
        "--workers",
        "1",
        "--max-cron-threads",
        "1",
        "--cron-retry-delay",
        "0.5",
        "--cron-max-failures",
        "3",
        "--cron-failure-window",
        "0",
    )
    eventually(lambda: registered(cron_db, 1))
    make_due(cron_db, "fail.always")
    eventually(
        lambda: query(
            cron_db, "SELECT NOT active FROM prefork.cron_job WHERE name = 'fail.always'"
        )[0][0],
        30,
    )
    runs = query(
        cron_db,
        "SELECT status, started_at FROM prefork.cron_run WHERE job = 'fail.always' ORDER BY id",
    )
    assert [status for status, _ in runs] == ["failed"] * 3
    first_gap = (runs[1][1] - runs[0][1]).total_seconds()
    second_gap = (runs[2][1] - runs[1][1]).total_seconds()
    assert first_gap >= 0.4 and second_gap >= 0.9  # 0.5 s, then doubled
    assert query(cron_db, "SELECT count(*) FROM cron_hits")[0][0] == 0  # rolled back
    log = server.log()
    assert "RuntimeError: this job always fails" in log
    assert "ALERT cron job 'fail.always' deactivated after 3 consecutive failures" in log
    time.sleep(1.5)
    assert len(query(cron_db, "SELECT 1 FROM prefork.cron_run WHERE job = 'fail.always'")) == 3
    enabled = cli(cron_db, "enable", "fail.always")
    assert enabled.returncode == 0 and "enabled" in enabled.stdout


def test_a_cron_worker_killed_mid_job_releases_it_and_another_runs_the_slot(
    cron_db: str, server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = start(
        server_factory,
        cron_db,
        "--workers",
        "1",
        "--max-cron-threads",
        "2",
        CRONTEST_DIR=str(tmp_path),
    )
    eventually(lambda: registered(cron_db, 1))
    make_due(cron_db, "slow.once")
    marker = tmp_path / "slow.once.pid"
    first = int(eventually(lambda: marker.exists() and marker.read_text()))
    os.kill(first, signal.SIGKILL)
    server.wait_log(rf"cron worker #\d \(pid {first}\) exited: crash, killed by signal SIGKILL")
    eventually(lambda: query(cron_db, "SELECT count(*) FROM cron_hits")[0][0] == 1, 30)
    runs = query(
        cron_db,
        "SELECT status, slot, error FROM prefork.cron_run WHERE job = 'slow.once' ORDER BY id",
    )
    # The killed attempt is closed as lost by the worker that claimed the job next.
    assert [status for status, _, _ in runs] == ["lost", "ok"]
    assert "stopped renewing the lease" in runs[0][2]
    assert runs[0][1] == runs[1][1]  # the same slot, run again: at least once
    assert query(cron_db, "SELECT pid FROM cron_hits")[0][0] != first


def test_http_is_served_while_a_cron_job_burns_cpu(
    cron_db: str, server_factory: ServerFactory
) -> None:
    server = start(server_factory, cron_db, "--workers", "2", "--max-cron-threads", "1")
    eventually(lambda: registered(cron_db, 1))
    make_due(cron_db, "busy.cpu")
    eventually(
        lambda: (
            query(cron_db, "SELECT count(*) FROM prefork.cron_run WHERE job = 'busy.cpu'")[0][0]
            == 1
        )
    )
    statuses = []
    for _ in range(50):
        conn = server.http(5)
        conn.request("GET", "/sleep?s=0")
        statuses.append(conn.getresponse().status)
        conn.close()
    assert statuses == [200] * 50
    # ... all answered while the job was still burning (it runs 4 s): served beside it
    assert query(cron_db, "SELECT finished_at FROM prefork.cron_run WHERE job = 'busy.cpu'") == [
        (None,)
    ]


def test_threaded_mode_runs_jobs_in_cron_threads(
    cron_db: str, server_factory: ServerFactory
) -> None:
    server = start(server_factory, cron_db, "--max-cron-threads", "1")
    server.wait_log(r"1 cron thread\(s\) running \d+ job\(s\)")
    eventually(lambda: registered(cron_db, 1))
    assert cli(cron_db, "run", "quick.mark").returncode == 0
    eventually(lambda: query(cron_db, "SELECT count(*) FROM cron_hits")[0][0] == 1, 15)
    assert query(cron_db, "SELECT pid FROM cron_hits")[0][0] == server.proc.pid


def test_cli_errors_and_foreground_run(cron_db: str) -> None:
    assert "no scheduled jobs" in cli(cron_db, "list").stdout  # also creates the schema
    query(
        cron_db,
        "INSERT INTO prefork.cron_job (name, schedule, next_run) "
        "VALUES ('other.job', 'every 60s', now() + interval '1 hour')",
    )
    missing = cli(cron_db, "run")
    assert missing.returncode == 2 and "needs a job name" in missing.stderr
    ran = cli(cron_db, "run", "quick.mark", "--foreground")
    assert ran.returncode == 0 and "quick.mark: ok in" in ran.stdout, ran.stdout + ran.stderr
    assert query(cron_db, "SELECT count(*) FROM cron_hits")[0][0] == 1
    assert query(cron_db, "SELECT declared FROM prefork.cron_job WHERE name = 'other.job'") == [
        (True,)
    ]  # a foreground run leaves the other jobs alone
    capped = cli(cron_db, "run", "busy.cpu", "--foreground", "--limit-time-cpu-cron", "1")
    assert capped.returncode == -signal.SIGXCPU  # the same CPU limit as in a cron worker
    unknown = cli(cron_db, "disable", "no.such.job")
    assert unknown.returncode == 1 and "no job named" in unknown.stdout


def test_a_job_killed_by_its_cpu_limit_is_tried_twice_then_given_up(
    cron_db: str, server_factory: ServerFactory
) -> None:
    """SIGXCPU ends the worker before it can record anything: the slot is started again
    once (at least once), then counted as lost and moved to its next slot, never looped."""
    server = start(
        server_factory,
        cron_db,
        "--workers",
        "1",
        "--max-cron-threads",
        "1",
        "--limit-time-cpu-cron",
        "1",
    )
    eventually(lambda: registered(cron_db, 1))
    make_due(cron_db, "busy.cpu")
    eventually(
        lambda: (
            query(cron_db, "SELECT last_status FROM prefork.cron_job WHERE name = 'busy.cpu'")[0][0]
            == "lost"
        ),
        40,
    )
    assert server.log().count("exited: cpu-time, CPU time above limit 1s") == 2
    runs = query(cron_db, "SELECT status FROM prefork.cron_run WHERE job = 'busy.cpu'")
    assert sorted(str(status) for (status,) in runs) == ["lost", "lost"]
    ((failures, later),) = query(
        cron_db,
        "SELECT failures, next_run > now() + interval '50 "
        "minutes' FROM prefork.cron_job WHERE name = 'busy.cpu'",
    )
    assert (failures, later) == (1, True)
    assert query(cron_db, "SELECT count(*) FROM cron_hits")[0][0] == 0


def test_threaded_mode_reloads_to_stop_a_job_over_its_time_limit(
    cron_db: str, server_factory: ServerFactory
) -> None:
    server = start(
        server_factory, cron_db, "--max-cron-threads", "1", "--limit-time-real-cron", "2"
    )
    eventually(lambda: registered(cron_db, 1))
    make_due(cron_db, "slow.sleep")
    server.wait_log(r"threaded mode limit reached \(cron-timeout: job 'slow\.sleep'", 20)
    server.wait_log(r"re-executing", 20)
    assert query(cron_db, "SELECT status FROM prefork.cron_run WHERE job = 'slow.sleep'") == [
        ("timeout",)
    ]
    eventually(lambda: server.log().count("HTTP service running on") == 2, 20)
    conn = server.http(5)
    try:
        conn.request("GET", "/sleep?s=0")
        assert conn.getresponse().status == 200
    finally:
        conn.close()


def test_the_demo_page_shows_its_scheduled_job(
    fresh_database: str, server_factory: ServerFactory
) -> None:
    server: Server = server_factory.start(
        "--workers", "1", "--max-cron-threads", "1", "--db-uri", fresh_database
    )
    eventually(lambda: registered(fresh_database, 1))
    result = subprocess.run(
        [PREFORK, "cron", "run", "demo.heartbeat", "--db-uri", fresh_database],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr

    def page() -> str:
        return server.get("/")[2].decode()

    shown = eventually(lambda: "(ok)" in page() and page())
    assert "demo.heartbeat</code> (every minute): last run " in shown


@pytest.mark.parametrize("mode", [(), ("--workers", "1")])
def test_jobs_that_cannot_be_imported_stop_the_server(
    mode: tuple[str, ...], server_factory: ServerFactory
) -> None:
    server: Server = server_factory.start("--cron-jobs", "no_such_jobs_module", *mode, wait=False)
    code = server.proc.wait(60)
    log = server.log()
    assert "cron_jobs 'no_such_jobs_module': no module named 'no_such_jobs_module'" in log
    if mode:  # the cron worker cannot start: the master backs off, then gives up
        assert code == 3 and "failed to start 5 times in a row" in log
    else:
        assert code == 2


def test_a_cron_worker_over_the_soft_memory_limit_is_recycled_after_its_job(
    cron_db: str, server_factory: ServerFactory
) -> None:
    server = start(
        server_factory,
        cron_db,
        "--workers",
        "1",
        "--max-cron-threads",
        "1",
        "--limit-memory-soft",
        "100M",
        "--limit-memory-hard",
        "1G",
    )
    eventually(lambda: registered(cron_db, 1))
    make_due(cron_db, "mem.grab")
    server.wait_log(
        r"cron worker #1 \(pid \d+\) exited: memory-soft, RSS [\d.]+ MiB > limit "
        r"100\.0 MiB",
        timeout=20,
    )
    assert query(cron_db, "SELECT last_status FROM prefork.cron_job WHERE name = 'mem.grab'") == [
        ("ok",)
    ]  # the job finished; its worker was replaced afterwards
    eventually(lambda: server.log().count("spawned cron worker #1") == 2)


def test_a_cron_worker_is_recycled_after_limit_time_worker_cron(
    cron_db: str, server_factory: ServerFactory
) -> None:
    server = start(
        server_factory,
        cron_db,
        "--workers",
        "1",
        "--max-cron-threads",
        "1",
        "--limit-time-worker-cron",
        "1",
    )
    server.wait_log(
        r"cron worker #1 \(pid \d+\) exited: cron-lifetime, lived "
        r"limit_time_worker_cron \(1s\)",
        timeout=20,
    )
    eventually(lambda: server.log().count("spawned cron worker #1") >= 2)
    assert "ALERT" not in server.log()


def test_application_code_can_trigger_a_job(cron_db: str, server_factory: ServerFactory) -> None:
    server = start(
        server_factory,
        cron_db,
        "--workers",
        "1",
        "--max-cron-threads",
        "1",
        "--cron-poll-interval",
        "60",
    )
    eventually(lambda: registered(cron_db, 1))
    assert server.get("/trigger?name=quick.mark")[2] == b"True"
    assert server.get("/trigger?name=no.such.job")[2] == b"False"
    eventually(lambda: query(cron_db, "SELECT count(*) FROM cron_hits")[0][0] == 1, 10)
