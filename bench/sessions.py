"""Session benchmark: requests/s of a page that reads and writes its session, per store,
against the same page without a session, in one run (prefork, 2 workers; the memory store
in threaded mode, against threaded mode without a session).

Each measurement: one session created first, then `wrk -t1 -c10` keep-alive for the
duration with that session's cookie on every request (each request rewrites it).

Run: python bench/sessions.py [--duration 8]
     BENCH_DSN names the PostgreSQL database; BENCH_REDIS a Redis (else one is started here).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from http_hello import DSN, free_port, running
from http_workers import PY, wrk

REDIS_URL = os.environ.get("BENCH_REDIS", "")


def prefork(port: int, *extra: str) -> list[str]:
    return [
        PY,
        "-m",
        "prefork",
        "run",
        "--app",
        "sessionbench_app:app",
        "--http-interface",
        "127.0.0.1",
        "-p",
        str(port),
        "--no-access-log",
        "--max-cron-threads",
        "0",
        "--db-uri",
        DSN,
        "--data-dir",
        tempfile.mkdtemp(),
        *extra,
    ]


@contextmanager
def redis_url() -> Iterator[str]:
    if REDIS_URL:
        yield REDIS_URL
        return
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("set BENCH_REDIS or install redis-server")
    port = free_port()
    proc = subprocess.Popen(
        [server, "--port", str(port), "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def session_cookie(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/rw", timeout=10) as response:
        return response.headers["Set-Cookie"].split(";", 1)[0]


def measure(command_extra: tuple[str, ...], path: str, duration: int) -> tuple[float, float]:
    port = free_port()
    with running(prefork(port, *command_extra), port):
        cookie = session_cookie(port)
        headers = ["-H", f"Cookie: {cookie}"]
        wrk(port, 10, 2, False, path, headers)
        rate, _, p99 = wrk(port, 10, duration, False, path, headers)
    return rate, p99


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=8)
    args = parser.parse_args()
    with redis_url() as url:
        rows = [
            ("2 workers", "no session", ("--workers", "2"), "/plain"),
            ("2 workers", "file", ("--workers", "2"), "/rw"),
            ("2 workers", "redis", ("--workers", "2", "--session-store", url), "/rw"),
            ("threaded", "no session", (), "/plain"),
            ("threaded", "memory", ("--session-store", "memory"), "/rw"),
        ]
        results = {
            (mode, store): measure(extra, path, args.duration) for mode, store, extra, path in rows
        }
    print("| mode | session store | req/s | p99 ms | vs the same mode without a session |")
    print("|---|---|---|---|---|")
    for (mode, store), (rate, p99) in results.items():
        base = results[(mode, "no session")][0]
        print(f"| {mode} | {store} | {rate:,.0f} | {p99:.2f} | {rate / base:.2f}x |")


if __name__ == "__main__":
    main()
