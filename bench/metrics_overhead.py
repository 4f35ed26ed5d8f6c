"""What counting requests for /metrics costs: prefork (2 workers, hello world) with metrics
on (the default) and off (metrics_allow empty), alternately, in one run.

Run: python bench/metrics_overhead.py [--duration 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics

from http_hello import free_port, running
from http_workers import commands, wrk


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"metrics on": [], "metrics off": []}
    for _ in range(args.rounds):
        for name, extra in (("metrics on", []), ("metrics off", ["--metrics-allow", ""])):
            port = free_port()
            with running(commands(2, port)["prefork"] + extra, port):
                wrk(port, 10, 2, False)
                rates[name].append(wrk(port, 10, args.duration, False)[0])
    print("| prefork, 2 workers, wrk -t1 -c10 keep-alive | req/s (median) | runs |")
    print("|---|---|---|")
    for name, values in rates.items():
        runs = ", ".join(f"{v:,.0f}" for v in values)
        print(f"| {name} | {statistics.median(values):,.0f} | {runs} |")
    on, off = (statistics.median(v) for v in rates.values())
    print(f"\nmetrics on / off: {on / off:.2f}x")


if __name__ == "__main__":
    main()
