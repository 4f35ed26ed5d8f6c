"""Cron leases against a real PostgreSQL: a renewed lease holds past its length, an unrenewed
one ends; a frozen host loses its job to another host and cannot commit it when resumed."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from prefork.cron.lease import Lease, lease_seconds, set_session_timeouts
from prefork.cron.registry import Job
from prefork.cron.schedule import Schedule
from prefork.cron.store import claim_due, sync_jobs
from prefork.db.schema import migrate_postgres
from tests.integration.conftest import Server, ServerFactory
from tests.integration.test_cron import JOBS, eventually, query
from tests.integration.test_cron import cron_db as cron_db  # the fixture
from tests.unit.test_cron_lease import LIMIT


def nothing(ctx: Any) -> None:
    pass


def test_a_renewed_lease_outlives_its_length_and_an_unrenewed_one_ends(fresh_database: str) -> None:
    with psycopg.connect(fresh_database) as setup:
        migrate_postgres(setup)
        sync_jobs(setup, [Job("t.held", Schedule.parse(every="1h"), nothing)])
        setup.execute("UPDATE prefork.cron_job SET next_run = now()")
        setup.commit()
    with psycopg.connect(fresh_database) as holder, psycopg.connect(fresh_database) as other:
        set_session_timeouts(holder, idle_in_transaction=1)
        assert claim_due(holder) is not None
        guard = threading.Lock()
        lease = Lease(holder, 1.0, guard)
        lease.start()
        end = time.monotonic() + 4  # four lease lengths, as a long job without a limit
        while time.monotonic() < end:
            assert claim_due(other) is None, "a renewed lease was lost"
            time.sleep(0.2)
        with guard:
            assert lease.confirm() == ""
        lease.stop()
        eventually(lambda: claim_due(other), 10)  # PostgreSQL ended the unrenewed lease
        with guard:
            assert lease.confirm().startswith("its lock connection failed")


def test_a_frozen_host_loses_its_job_after_the_lease_and_cannot_commit_it_when_resumed(
    cron_db: str, server_factory: ServerFactory, tmp_path: Path
) -> None:
    env = {"CRONTEST_LEASE": "1", "CRONTEST_DIR": str(tmp_path)}
    options = (
        *JOBS,
        "--db-uri",
        cron_db,
        "--workers",
        "1",
        "--max-cron-threads",
        "1",
        "--limit-time-real-cron",
        str(LIMIT),
    )
    host_a: Server = server_factory.start(
        *options, "--data-dir", str(tmp_path / "a"), env=env, session=True
    )
    marker = tmp_path / "lease.slot.pid"
    frozen_pid = int(eventually(lambda: marker.exists() and marker.read_text(), 30))
    os.killpg(host_a.proc.pid, signal.SIGSTOP)  # master and workers, mid-job
    try:
        ((run_id, slot, started),) = query(
            cron_db,
            "SELECT id, slot, started_at FROM prefork.cron_run "
            "WHERE job = 'lease.slot' AND finished_at IS NULL",
        )
        host_b: Server = server_factory.start(*options, "--data-dir", str(tmp_path / "b"), env=env)
        ((pid,),) = eventually(
            lambda: query(cron_db, "SELECT pid FROM cron_hits WHERE note::timestamptz = %s", slot),
            60,
        )
        assert pid != frozen_pid  # host B ran the frozen slot ...
        ((rerun,),) = query(
            cron_db,
            "SELECT min(started_at) FROM prefork.cron_run "
            "WHERE job = 'lease.slot' AND slot = %s AND id <> %s",
            slot,
            run_id,
        )
        assert (rerun - started).total_seconds() > lease_seconds(LIMIT) - 2  # ... not before
    finally:  # the worker first: its master, resumed, would kill it (past its limit) at once
        os.kill(frozen_pid, signal.SIGCONT)
        try:
            host_a.wait_log(
                r"cron job 'lease.slot' lost its lease after [\d.]+s .*rolled "
                r"back, not committed",
                30,
            )
            eventually(
                lambda: query(
                    cron_db,
                    "SELECT 1 FROM prefork.cron_run WHERE id = %s AND error LIKE 'lease lost: %%'",
                    run_id,
                ),
                10,
            )
        finally:
            os.killpg(host_a.proc.pid, signal.SIGCONT)
    eventually(lambda: query(cron_db, "SELECT count(*) FROM cron_hits")[0][0] >= 4, 60)
    host_a.stop()
    host_b.stop()
    assert query(cron_db, "SELECT status FROM prefork.cron_run WHERE id = %s", run_id) == [
        ("lost",)
    ]
    hits = query(cron_db, "SELECT note, count(*) FROM cron_hits GROUP BY note")
    runs = query(cron_db, "SELECT id, slot, status, error FROM prefork.cron_run ORDER BY id")
    assert all(count == 1 for _, count in hits), (hits, runs)  # each slot's effect once
    oks = [run for run in runs if run[2] == "ok"]
    assert len(oks) == sum(count for _, count in hits), (hits, runs)  # each one an ok attempt
