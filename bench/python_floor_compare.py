"""prefork next to the Python floor (bench/python_floor.py) and granian, keep-alive.

All servers run at once, each with the same number of workers, and are measured in turn
(`wrk -t1 -d<duration>s`, one round after another, so that a drifting machine weighs on all
alike); each figure is the median of its rounds. prefork's limit_request is set out of
reach: the floor never recycles its workers either. The figures answer two questions: how
far prefork is above what any Python worker must do (its own overhead), and whether a
Python worker can reach granian on this machine at all.

Run: python bench/python_floor_compare.py [--workers 2 5] [--connections 10 100]
     [--rounds 3] [--duration 5]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from http_workers import commands, measure_each

BENCH = Path(__file__).resolve().parent
FLOOR = str(BENCH / "python_floor.py")


def servers(workers: int, port: int) -> dict[str, list[str]]:
    anchors = commands(workers, port)
    return {
        "prefork": [*anchors["prefork"], "--limit-request", str(1 << 40)],
        "python floor (wsgi)": [sys.executable, FLOOR, str(port), str(workers)],
        "python floor (canned)": [
            sys.executable,
            FLOOR,
            str(port),
            str(workers),
            "--level",
            "canned",
        ],
        "granian": anchors["granian"],
    }


def compare(workers: int, connections: int, rounds: int, duration: int) -> None:
    rows = measure_each(lambda port: servers(workers, port), connections, duration, False, rounds)
    granian = next(rate for name, rate, *_ in rows if name == "granian")
    prefork = next(rate for name, rate, *_ in rows if name == "prefork")
    for name, rate, p50, p99, _ in rows:
        print(
            f"| {workers} | {connections} | {name} | {rate:,.0f} | {p50:.2f} | {p99:.2f} | "
            f"{rate / granian:.2f}x | {prefork / rate:.2f}x |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 5])
    parser.add_argument("--connections", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    args = parser.parse_args()
    os.chdir(BENCH)
    print("| workers | wrk -c | server | req/s | p50 ms | p99 ms | vs granian | prefork vs it |")
    print("|---|---|---|---|---|---|---|---|")
    for workers in args.workers:
        for connections in args.connections:
            compare(workers, connections, args.rounds, args.duration)


if __name__ == "__main__":
    main()
