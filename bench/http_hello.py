"""Hello-world HTTP benchmark: prefork against gunicorn, same machine, same run.

Pairs (each measured with wrk -t1 -c10, keep-alive and with `Connection: close`):
- prefork threaded mode (N threads) vs gunicorn gthread (1 worker, N threads);
- prefork's HTTP engine in one single-threaded process vs gunicorn sync with 1 worker.

Run: python bench/http_hello.py [--duration 10] [--threads 4]
Prints a Markdown table (requests/s, p99 latency, and prefork/gunicorn ratios).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# prefork needs a database at start; without one configured it would start its embedded
# PostgreSQL for every server. BENCH_DSN names the one to use (the machine's by default).
DSN = os.environ.get("BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@contextmanager
def running(
    command: list[str], port: int, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """The server `command` started, once it listens on `port`; stopped after the block."""
    env = {**os.environ, **(env or {}), "PYTHONPATH": f"{BENCH}:{ROOT}"}
    proc = subprocess.Popen(
        command, cwd=BENCH, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_port(port)
        yield proc
    finally:
        proc.terminate()
        proc.wait(15)


def wrk(port: int, duration: int, close: bool) -> tuple[float, float]:
    """(requests/s, p99 latency in ms)."""
    command = ["wrk", "-t1", "-c10", f"-d{duration}s", "--latency"]
    if close:
        command += ["-H", "Connection: close"]
    out = subprocess.run(
        [*command, f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return rate, float(value) * scale


def servers(threads: int) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (prefork command, gunicorn command), with {port} to fill in."""
    py = sys.executable
    return {
        f"threaded, {threads} threads vs gunicorn gthread": (
            [
                py,
                "-m",
                "prefork",
                "run",
                "--app",
                "hello:app",
                "--http-interface",
                "127.0.0.1",
                "-p",
                "{port}",
                "--http-threads",
                str(threads),
                "--no-access-log",
                "--log-level",
                "warning",
                "--db-uri",
                DSN,
            ],
            [
                py,
                "-m",
                "gunicorn",
                "-w",
                "1",
                "--threads",
                str(threads),
                "-b",
                "127.0.0.1:{port}",
                "hello:app",
            ],
        ),
        "single process, one thread vs gunicorn sync -w 1": (
            [py, str(BENCH / "engine_server.py"), "{port}"],
            [py, "-m", "gunicorn", "-w", "1", "-k", "sync", "-b", "127.0.0.1:{port}", "hello:app"],
        ),
    }


def measure(command: list[str], duration: int, close: bool) -> tuple[float, float]:
    port = free_port()
    with running([part.replace("{port}", str(port)) for part in command], port):
        wrk(port, 2, close)  # warm-up
        return wrk(port, duration, close)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    print(
        "| pair | connection | prefork req/s | gunicorn req/s | ratio | "
        "prefork p99 ms | gunicorn p99 ms | p99 ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, (ours, theirs) in servers(args.threads).items():
        for close in (False, True):
            rate_a, p99_a = measure(ours, args.duration, close)
            rate_b, p99_b = measure(theirs, args.duration, close)
            print(
                f"| {name} | {'close' if close else 'keep-alive'} | {rate_a:,.0f} | "
                f"{rate_b:,.0f} | {rate_a / rate_b:.2f}x | {p99_a:.2f} | {p99_b:.2f} | "
                f"{p99_a / p99_b:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
