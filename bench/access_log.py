"""What the access log costs: prefork (2 workers, hello world) with its default access log
against `--no-access-log`, and gunicorn sync with its own defaults (no access log), in one
run on one machine.

The access log goes to a `--logfile` and, in a second variant, to standard error as a pipe
(what systemd's journal or a container runtime reads), drained by this script, which also
counts the lines: every request answered must have its line. All servers run at once; each
is warmed up for 2 s, then measured with `wrk -t1 -c10 -d<duration>s`, in turn, for
--rounds rounds (a drifting machine weighs on all alike), keep-alive and
`Connection: close`; each figure is the median of its rounds.

Run: python bench/access_log.py [--duration 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path

from http_hello import BENCH, ROOT, free_port, running, wait_port
from http_workers import alternate, commands, percentile, requests_per_second, wrk_output

from prefork.compiled import build

ACCESS = b" INFO prefork.access: "
LABELS = {
    "no access log": "prefork, --no-access-log",
    "logfile": "prefork, access log to logfile",
    "stderr pipe": "prefork, access log to stderr (a pipe)",
    "gunicorn sync": "gunicorn sync (defaults: no access log)",
}


def wrk(port: int, duration: int, close: bool) -> tuple[float, float, int]:
    """(requests/s, p99 ms, responses received) of `wrk -t1 -c10`."""
    out = wrk_output(port, 10, duration, close)
    count = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return requests_per_second(out), percentile(out, "99%"), count


def prefork(port: int, *extra: str, access_log: bool = True) -> list[str]:
    command = commands(2, port)["prefork"]
    if access_log:
        command.remove("--no-access-log")
    return [*command, *extra]


class Drain(threading.Thread):
    """Reads a server's standard error (a pipe) to its end, counting access lines."""

    def __init__(self, stream: object) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.lines = 0

    def run(self) -> None:
        for line in self.stream:  # type: ignore[attr-defined]
            if ACCESS in line:
                self.lines += 1


@contextmanager
def running_to_pipe(command: list[str], port: int) -> Iterator[Drain]:
    env = {**os.environ, "PYTHONPATH": f"{BENCH}:{ROOT}"}
    proc = subprocess.Popen(
        command, cwd=BENCH, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    drain = Drain(proc.stderr)
    drain.start()
    try:
        wait_port(port)
        yield drain
    finally:
        proc.terminate()
        proc.wait(15)
        drain.join(15)


def access_log_overhead(duration: int, rounds: int) -> None:
    """Prints a Markdown table: req/s, p99 and the ratio to prefork without access log."""
    logfile = Path(tempfile.mkdtemp()) / "prefork.log"
    print("| wrk -c10 | server | req/s | p99 ms | ratio to prefork without access log |")
    print("|---|---|---|---|---|")
    served: dict[str, int] = {}  # responses wrk received, by server
    drains: list[Drain] = []
    for close in (False, True):
        ports = {
            name: free_port()
            for name in ("no access log", "logfile", "stderr pipe", "gunicorn sync")
        }
        servers = {
            "no access log": prefork(ports["no access log"], access_log=False),
            "logfile": prefork(ports["logfile"], "--logfile", str(logfile)),
            "stderr pipe": prefork(ports["stderr pipe"]),
            "gunicorn sync": [
                sys.executable,
                "-m",
                "gunicorn",
                "-w",
                "2",
                "-k",
                "sync",
                "-b",
                f"127.0.0.1:{ports['gunicorn sync']}",
                "hello:app",
            ],
        }
        with ExitStack() as stack:
            for name, command in servers.items():
                if name == "stderr pipe":
                    drains.append(stack.enter_context(running_to_pipe(command, ports[name])))
                else:
                    stack.enter_context(running(command, ports[name]))
                served[name] = served.get(name, 0) + wrk(ports[name], 2, close)[2]
            figures = alternate(
                {name: partial(wrk, port, duration, close) for name, port in ports.items()}, rounds
            )
        for name, runs in figures.items():
            served[name] += sum(count for _, _, count in runs)
        rate = {name: statistics.median(r for r, _, _ in runs) for name, runs in figures.items()}
        p99 = {name: statistics.median(p for _, p, _ in runs) for name, runs in figures.items()}
        base = rate["no access log"]
        mode = "close" if close else "keep-alive"
        for name in figures:
            label = LABELS[name]
            print(
                f"| {mode} | {label} | {rate[name]:,.0f} | {p99[name]:.2f} | "
                f"{rate[name] / base:.2f}x |",
                flush=True,
            )
        for name in ("logfile", "stderr pipe"):
            print(
                f"| {mode} | prefork with access log to {name} / gunicorn sync | | | "
                f"{rate[name] / rate['gunicorn sync']:.2f}x |",
                flush=True,
            )
    logged = sum(1 for line in logfile.open("rb") if ACCESS in line)
    runs = 2 * (rounds + 1)  # wrk runs per server; each may leave 10 requests unanswered
    print(
        f"\naccess lines after the servers stopped: logfile {logged:,} for "
        f"{served['logfile']:,} responses wrk received, stderr pipe "
        f"{sum(d.lines for d in drains):,} for {served['stderr pipe']:,} (wrk stops with "
        f"up to 10 requests in flight, served and logged but not counted: at most "
        f"{10 * runs} more lines)"
    )
    logfile.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.chdir(BENCH)
    print(f"prefork's request path: {build()}\n")
    access_log_overhead(args.duration, args.rounds)


if __name__ == "__main__":
    main()
