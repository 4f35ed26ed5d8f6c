"""What counting requests for /metrics costs: prefork (2 workers, hello world) with metrics
on (the default) and off (metrics_allow empty), alternately, in one run.

Run: python bench/metrics_overhead.py [--duration 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
from functools import partial

from http_hello import free_port, running
from http_workers import alternate, commands, wrk


def measure(extra: list[str], duration: int) -> float:
    """Requests/s of prefork started with `extra` options, after a 2 s warm-up."""
    port = free_port()
    with running(commands(2, port)["prefork"] + extra, port):
        wrk(port, 10, 2, False)
        return wrk(port, 10, duration, False)[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rates = alternate(
        {
            "metrics on": partial(measure, [], args.duration),
            "metrics off": partial(measure, ["--metrics-allow", ""], args.duration),
        },
        args.rounds,
    )
    print("| prefork, 2 workers, wrk -t1 -c10 keep-alive | req/s (median) | runs |")
    print("|---|---|---|")
    for name, values in rates.items():
        runs = ", ".join(f"{v:,.0f}" for v in values)
        print(f"| {name} | {statistics.median(values):,.0f} | {runs} |")
    on, off = (statistics.median(v) for v in rates.values())
    print(f"\nmetrics on / off: {on / off:.2f}x")


if __name__ == "__main__":
    main()
