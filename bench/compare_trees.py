"""Before/after: the same hello-world load against prefork served from two checkouts
(e.g. `git worktree add /tmp/before REV`), alternately, in one run.

Run: python bench/compare_trees.py BEFORE_DIR [AFTER_DIR] [--rounds 3] [--duration 5]
     [--workers 2] [--connections 10] [--close]
     Each tree gets its own database (BENCH_DSN's server, databases `bench_before` and
     `bench_after`, created if missing): trees with different schema versions coexist.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from functools import partial
from pathlib import Path

import psycopg
from http_hello import DSN, free_port, wait_port
from http_workers import BENCH, PY, alternate, wrk


def database(name: str) -> str:
    with psycopg.connect(DSN, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    return DSN.rsplit("/", 1)[0] + "/" + name


def serve_and_measure(tree: str, uri: str, args: argparse.Namespace) -> float:
    port = free_port()
    command = [
        PY,
        "-m",
        "prefork",
        "run",
        "--app",
        "hello:app",
        "--http-interface",
        "127.0.0.1",
        "-p",
        str(port),
        "--gevent-port",
        str(free_port()),
        "--workers",
        str(args.workers),
        "--no-access-log",
        "--max-cron-threads",
        "0",
        "--db-uri",
        uri,
        "--data-dir",
        tempfile.mkdtemp(),
    ]
    env = {**os.environ, "PYTHONPATH": f"{BENCH}:{tree}"}
    proc = subprocess.Popen(
        command, cwd=BENCH, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_port(port)
        time.sleep(1)
        wrk(port, args.connections, 2, args.close)
        return wrk(port, args.connections, args.duration, args.close)[0]
    finally:
        proc.terminate()
        proc.wait(20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("before")
    parser.add_argument("after", nargs="?", default=str(Path(BENCH).parent))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--close", action="store_true", help="Connection: close requests")
    args = parser.parse_args()
    trees = {
        "before": (args.before, database("bench_before")),
        "after": (args.after, database("bench_after")),
    }
    rates = alternate(
        {name: partial(serve_and_measure, tree, uri, args) for name, (tree, uri) in trees.items()},
        args.rounds,
    )
    for name, values in rates.items():
        runs = " / ".join(f"{v:,.0f}" for v in values)
        print(f"| {name} ({trees[name][0]}) | {runs} | {statistics.median(values):,.0f} |")
    before, after = (statistics.median(v) for v in rates.values())
    print(f"\nafter / before: {after / before:.2f}x")


if __name__ == "__main__":
    main()
