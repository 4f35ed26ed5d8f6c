"""A request that runs one SELECT through the pool: prefork against gunicorn sync with a
psycopg_pool pool per worker, equal worker counts, one run on one machine; then the cost of
borrowing and returning a connection per request, measured in one process.

Run: python bench/db_select.py [--duration 8] [--workers 2 4]
     (BENCH_DSN selects the PostgreSQL; default the machine's, postgresql://postgres@127.0.0.1/test)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable

import psycopg
from http_hello import DSN
from http_workers import BENCH, PY, measure_each
from psycopg_pool import ConnectionPool
from selectapps import QUERY

from prefork.db.pool import PostgresDatabase
from prefork.db.transaction import RequestTransaction


def commands(workers: int, port: int) -> dict[str, list[str]]:
    return {
        "prefork": [
            PY,
            "-m",
            "prefork",
            "run",
            "--app",
            "selectapps:prefork_app",
            "--http-interface",
            "127.0.0.1",
            "-p",
            str(port),
            "--workers",
            str(workers),
            "--no-access-log",
            "--db-uri",
            DSN,
            "--db_maxconn",
            "4",
            "--data-dir",
            tempfile.mkdtemp(),
        ],
        "gunicorn sync + psycopg_pool": [
            PY,
            "-m",
            "gunicorn",
            "-w",
            str(workers),
            "-k",
            "sync",
            "-b",
            f"127.0.0.1:{port}",
            "selectapps:gunicorn_app",
        ],
    }


def throughput(worker_counts: list[int], duration: int) -> None:
    print("| workers | wrk -c | server | req/s | p50 ms | p99 ms | prefork req/s ratio |")
    print("|---|---|---|---|---|---|---|")
    for workers in worker_counts:
        for connections in (10, 50):
            rows = measure_each(
                lambda port, w=workers: commands(w, port), connections, duration, False
            )
            for name, rate, p50, p99, ratio in rows:
                print(
                    f"| {workers} | {connections} | {name} | {rate:,.0f} | {p50:.2f} | "
                    f"{p99:.2f} | {ratio} |",
                    flush=True,
                )


def per_call(work: Callable[[], None], count: int) -> float:
    """Microseconds per call, best of three runs (the machine is shared)."""
    for _ in range(min(count, 500)):
        work()
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(count):
            work()
        best = min(best, (time.perf_counter() - started) / count * 1e6)
    return best


def acquire_overhead() -> None:
    """What borrowing and returning a connection costs a request, in one process, next to
    the SELECT round trip it serves."""
    held = psycopg.connect(DSN)
    pool: ConnectionPool = ConnectionPool(DSN, min_size=1, max_size=4, open=True)
    pool.wait()
    database = PostgresDatabase(DSN, maxconn=4, timeout=5)

    def select_on_held_connection() -> None:
        held.execute(QUERY).fetchone()
        held.commit()

    def psycopg_pool_borrow() -> None:
        with pool.connection():
            pass

    def prefork_borrow() -> None:
        tx = RequestTransaction(database)
        tx.connection()
        tx.end(commit=True)

    rows = [
        ("psycopg_pool: `with pool.connection()`, no query", psycopg_pool_borrow, 20000),
        ("prefork: request transaction borrow + end, no query", prefork_borrow, 20000),
        ("for scale: SELECT 1 + COMMIT on a held connection", select_on_held_connection, 2000),
    ]
    print("\n| per request, one process | us |")
    print("|---|---|")
    for label, work, count in rows:
        print(f"| {label} | {per_call(work, count):.1f} |", flush=True)
    pool.close()
    database.close()
    held.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    args = parser.parse_args()
    os.chdir(BENCH)
    sys.path.insert(0, str(BENCH))
    throughput(args.workers, args.duration)
    acquire_overhead()


if __name__ == "__main__":
    main()
