"""Idle cron cost: database transactions per second and the CPU of the cron workers with 2
cron workers, while none runs a job and while one runs a 30 s job (`bench.long`), for this
tree and, given BEFORE_DIR (e.g. `git worktree add /tmp/before REV`), for another checkout, in
one run. Transactions: the delta of pg_stat_database's xact_commit + xact_rollback for the
tree's own database, read from another database so the probe counts none of its own.

Run: python bench/cron_idle.py [BEFORE_DIR] [--seconds 20]
     (BENCH_DSN: a PostgreSQL where databases can be created)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import psycopg
from http_hello import DSN, free_port, wait_port
from http_workers import BENCH, PY
from psycopg import sql

CRON_WORKERS = 2


def fresh_database(name: str) -> str:
    with psycopg.connect(DSN, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return DSN.rsplit("/", 1)[0] + "/" + name


@contextmanager
def server(tree: str, uri: str, job_dir: str) -> Iterator[psutil.Process]:
    port = free_port()
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
        "--gevent-port",
        str(free_port()),
        "--workers",
        "1",
        "--max-cron-threads",
        str(CRON_WORKERS),
        "--no-access-log",
        "--db-uri",
        uri,
        "--data-dir",
        tempfile.mkdtemp(),
    ]
    env = {**os.environ, "PYTHONPATH": f"{BENCH}:{tree}", "BENCH_CRON_DIR": job_dir}
    proc = subprocess.Popen(
        command, cwd=BENCH, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_port(port)
        yield psutil.Process(proc.pid)
    finally:
        proc.terminate()
        proc.wait(60)


def cron_workers(master: psutil.Process) -> list[psutil.Process]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = [child for child in master.children() if "cron worker" in " ".join(child.cmdline())]
        if len(found) == CRON_WORKERS:
            return found
        time.sleep(0.1)
    raise RuntimeError("the cron workers did not start")


def transactions(database: str) -> int:
    with psycopg.connect(DSN, autocommit=True) as conn:  # another database: not counted
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
            (database,),
        ).fetchone()
    return int(row[0]) if row else 0


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def measure(database: str, idle: list[psutil.Process], seconds: float) -> tuple[float, float]:
    """(transactions/s in the database, % of a core used by the idle cron workers)."""
    time.sleep(1.5)  # settled; both reads lag the same (statistics are flushed each second)
    started = time.monotonic()
    tx_before, cpu_before = transactions(database), sum(map(cpu_seconds, idle))
    time.sleep(seconds)
    tx_after, cpu_after = transactions(database), sum(map(cpu_seconds, idle))
    elapsed = time.monotonic() - started
    return (tx_after - tx_before) / elapsed, (cpu_after - cpu_before) / elapsed * 100


def run_tree(label: str, tree: str, seconds: float) -> list[str]:
    database = f"bench_cron_idle_{label}"
    uri = fresh_database(database)
    job_dir = tempfile.mkdtemp()
    rows = []
    with server(tree, uri, job_dir) as master, psycopg.connect(uri, autocommit=True) as conn:
        workers = cron_workers(master)
        deadline = time.monotonic() + 60
        while not conn.execute(
            "SELECT 1 FROM prefork.cron_job WHERE name = 'bench.long'"
        ).fetchone():
            if time.monotonic() > deadline:
                raise RuntimeError("bench.long was never registered")
            time.sleep(0.1)
        time.sleep(2)
        rate, cpu = measure(database, workers, seconds)
        rows.append(f"| {label} | no job running | {rate:,.1f} | {cpu:.1f} % (both) |")
        conn.execute("UPDATE prefork.cron_job SET next_run = now() WHERE name = 'bench.long'")
        conn.execute("SELECT pg_notify('prefork_cron', 'bench.long')")
        marker = Path(job_dir) / "bench.long.pid"
        while not marker.exists() or not marker.read_text():
            time.sleep(0.05)
        busy = int(marker.read_text())
        idle = [worker for worker in workers if worker.pid != busy]
        rate, cpu = measure(database, idle, min(seconds, 25))
        rows.append(
            f"| {label} | one worker in a 30 s job | {rate:,.1f} | {cpu:.1f} % (the other) |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("before", nargs="?", help="another checkout to measure first")
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    os.chdir(BENCH)
    rows = []
    if args.before:
        rows += run_tree("before", str(Path(args.before).resolve()), args.seconds)
    rows += run_tree("after", str(Path(BENCH).parent), args.seconds)
    print(f"| tree | {CRON_WORKERS} cron workers | transactions/s | CPU of idle cron workers |")
    print("|---|---|---|---|")
    print("\n".join(rows))
    with psycopg.connect(DSN, autocommit=True) as admin:
        for label in ("before", "after"):
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(f"bench_cron_idle_{label}")
                )
            )


if __name__ == "__main__":
    main()
