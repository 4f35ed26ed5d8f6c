"""prefork next to the Python floor (bench/python_floor.py) and granian, keep-alive.

All servers run at once, each with the same number of workers, and are measured in turn
(`wrk -t1 -d<duration>s`, one round after another, so that a drifting machine weighs on all
alike). The figures answer two questions: how far prefork is above what any Python worker
must do (its own overhead), and whether a Python worker can reach granian on this machine
at all.

Run: python bench/python_floor_compare.py [--workers 2 5] [--connections 10 100]
     [--rounds 3] [--duration 5]
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import ExitStack
from pathlib import Path

from http_hello import free_port, running
from http_workers import alternate, commands, wrk

BENCH = Path(__file__).resolve().parent
FLOOR = str(BENCH / "python_floor.py")


def servers(workers: int, port: int) -> dict[str, list[str]]:
    anchors = commands(workers, port)
    return {
        "prefork": [*anchors["prefork"], "--limit-request", str(1 << 40)],
        "python floor (wsgi)": [sys.executable, FLOOR, str(port), str(workers)],
        "python floor (canned)": [sys.executable, FLOOR, str(port), str(workers),
                                  "--level", "canned"],
        "granian": anchors["granian"],
    }


def compare(workers: int, connections: int, rounds: int, duration: int) -> None:
    with ExitStack() as stack:
        ports = {}
        for name in servers(workers, 0):
            port = ports[name] = free_port()
            stack.enter_context(running(servers(workers, port)[name], port))
            wrk(port, connections, 2, False)  # warm-up
        rates = alternate({name: lambda port=port: wrk(port, connections, duration, False)[0]
                           for name, port in ports.items()}, rounds)
    mean = {name: sum(values) / len(values) for name, values in rates.items()}
    for name, values in rates.items():
        rounds_text = " / ".join(f"{value:,.0f}" for value in values)
        print(f"| {workers} | {connections} | {name} | {mean[name]:,.0f} | {rounds_text} | "
              f"{mean[name] / mean['granian']:.2f}x | {mean['prefork'] / mean[name]:.2f}x |",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 5])
    parser.add_argument("--connections", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    args = parser.parse_args()
    os.chdir(BENCH)
    print("| workers | wrk -c | server | req/s (mean) | rounds | vs granian | "
          "prefork vs it |")
    print("|---|---|---|---|---|---|---|")
    for workers in args.workers:
        for connections in args.connections:
            compare(workers, connections, args.rounds, args.duration)


if __name__ == "__main__":
    main()
