"""Cron dispatch: jobs/second and overhead per job with 1, 2 and 4 cron workers on 1000 due
no-op jobs; the wake-up latency of a triggered job through NOTIFY and through the poll
fallback; HTTP latency while a cron worker burns CPU for 10 s. One run, one machine.

Run: python bench/cron_jobs.py   (BENCH_DSN: a PostgreSQL where databases can be created)
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from http_hello import DSN, free_port, running
from http_workers import BENCH, PY, wrk
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

BENCH_DB = "prefork_bench_cron"
BURN = "import time\nend = time.monotonic() + 10\nwhile time.monotonic() < end: sum(range(10000))"
JOBS = 1000


def bench_uri() -> str:
    params = conninfo_to_dict(DSN)
    user, host = params.get("user", "postgres"), params.get("host", "127.0.0.1")
    return f"postgresql://{user}@{host}:{params.get('port', 5432)}/{BENCH_DB}"


def fresh_database() -> str:
    with psycopg.connect(DSN, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(BENCH_DB))
        )
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BENCH_DB)))
    return bench_uri()


@contextmanager
def server(uri: str, port: int, *args: str, **env: str) -> Iterator[None]:
    command = [
        PY,
        "-m",
        "prefork",
        "run",
        "--app",
        "hello:app",
        "--cron-jobs",
        "cronbench",
        "--http-interface",
        "127.0.0.1",
        "-p",
        str(port),
        "--no-access-log",
        "--db-uri",
        uri,
        "--data-dir",
        tempfile.mkdtemp(),
        *args,
    ]
    os.environ.update(env)
    try:
        with running(command, port):
            yield
    finally:
        for key in env:
            os.environ.pop(key, None)


def scalar(uri: str, query: str, *params: object) -> object:
    with psycopg.connect(uri, autocommit=True) as conn:
        row = conn.execute(query, params or None).fetchone()  # type: ignore[arg-type]
        return row[0] if row else None


def wait(predicate, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.01)


def throughput() -> None:
    print("| cron workers | jobs | seconds | jobs/s | ms per job per worker |")
    print("|---|---|---|---|---|")
    for workers in (1, 2, 4):
        elapsed = run_due_jobs(fresh_database(), workers)
        print(
            f"| {workers} | {JOBS} | {elapsed:.2f} | {JOBS / elapsed:,.0f} | "
            f"{elapsed * workers / JOBS * 1000:.2f} |",
            flush=True,
        )


def run_due_jobs(uri: str, workers: int) -> float:
    """Seconds for `workers` cron workers to run JOBS due no-op jobs."""
    with server(
        uri,
        free_port(),
        "--workers",
        "1",
        "--max-cron-threads",
        str(workers),
        BENCH_CRON_JOBS=str(JOBS),
    ):
        wait(lambda: scalar(uri, "SELECT count(*) FROM prefork.cron_job") == JOBS + 3)
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("UPDATE prefork.cron_job SET next_run = now() WHERE name LIKE 'noop.%'")
            started = time.monotonic()
            conn.execute("SELECT pg_notify('prefork_cron', 'bench')")
        wait(
            lambda: (
                scalar(
                    uri,
                    "SELECT count(*) FROM prefork.cron_job WHERE name LIKE 'noop.%' AND runs = 1",
                )
                == JOBS
            )
        )
        return time.monotonic() - started


def wakeup(rounds: int = 10) -> None:
    print("\n| wake-up path | median ms | max ms |")
    print("|---|---|---|")
    uri = fresh_database()
    with server(
        uri, free_port(), "--workers", "1", "--max-cron-threads", "1", "--cron-poll-interval", "2"
    ):
        wait(lambda: scalar(uri, "SELECT count(*) FROM prefork.cron_job") == 3)
        for label, notify in (
            ("NOTIFY (prefork cron run / trigger)", True),
            ("poll fallback, cron_poll_interval = 2 s", False),
        ):
            latencies = [trigger_latency(uri, notify) for _ in range(rounds)]
            print(
                f"| {label} | {statistics.median(latencies):.1f} | {max(latencies):.1f} |",
                flush=True,
            )


def trigger_latency(uri: str, notify: bool) -> float:
    """Milliseconds from the commit that makes bench.mark due to the start of its run, both
    read from the database's clock (the run row's started_at)."""
    query = "SELECT runs FROM prefork.cron_job WHERE name = 'bench.mark'"
    before = scalar(uri, query)
    time.sleep(0.3)
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("UPDATE prefork.cron_job SET next_run = now() WHERE name = 'bench.mark'")
        if notify:
            conn.execute("SELECT pg_notify('prefork_cron', 'bench.mark')")
        committed = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
    wait(lambda: scalar(uri, query) != before, 10)
    started = scalar(uri, "SELECT max(started_at) FROM prefork.cron_run WHERE job = 'bench.mark'")
    return (started - committed).total_seconds() * 1000  # type: ignore[operator]


def http_during_cron(duration: int = 6) -> None:
    print("\n| 2 HTTP workers, wrk -t1 -c10 keep-alive | req/s | p50 ms | p99 ms |")
    print("|---|---|---|---|")
    uri = fresh_database()
    port = free_port()
    with server(uri, port, "--workers", "2", "--max-cron-threads", "1"):
        wait(lambda: scalar(uri, "SELECT count(*) FROM prefork.cron_job") == 3)
        wrk(port, 10, 2, False)
        rate, p50, p99 = wrk(port, 10, duration, False)
        print(f"| no cron job running | {rate:,.0f} | {p50:.2f} | {p99:.2f} |", flush=True)
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("UPDATE prefork.cron_job SET next_run = now() WHERE name = 'bench.burn'")
            conn.execute("SELECT pg_notify('prefork_cron', 'bench.burn')")
        time.sleep(0.5)
        rate, p50, p99 = wrk(port, 10, duration, False)
        print(
            f"| a cron worker burning CPU (10 s job, nice 19) | {rate:,.0f} | {p50:.2f} | "
            f"{p99:.2f} |",
            flush=True,
        )
        time.sleep(5)  # the job is over
        burner = subprocess.Popen(["nice", "-n", "19", PY, "-c", BURN])
        time.sleep(0.5)
        rate, p50, p99 = wrk(port, 10, duration, False)
        burner.kill()
        burner.wait()
        print(
            f"| anchor: the same loop in a separate nice 19 process | {rate:,.0f} | "
            f"{p50:.2f} | {p99:.2f} |",
            flush=True,
        )


def main() -> None:
    os.chdir(BENCH)
    throughput()
    wakeup()
    http_during_cron()
    with psycopg.connect(DSN, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(BENCH_DB))
        )


if __name__ == "__main__":
    main()
