"""Multi-process hello-world benchmark: prefork against gunicorn sync, an Odoo-style werkzeug
prefork server and granian, in one run on one machine, with equal worker counts.

For each worker count (2 and 5), each wrk connection count (-c10, -c100) and each of
keep-alive / `Connection: close`, every server runs at once and, after a 2 s warm-up, is
measured with `wrk -t1 -d<duration>s --latency` in turn, for --rounds rounds; each figure
is the median of its rounds (this machine's speed drifts by tens of percent within
minutes: one measurement per server made the ratios a matter of luck). Then two
prefork-specific figures:
- p50/p99 of fast requests while one worker runs a 5-second CPU-bound request (2 workers),
  next to gunicorn sync in the same situation;
- what recycling by limit_request costs a keep-alive load, and how long each recycled
  worker overlaps its successor (the successor starts before the old worker stops).

Run: python bench/http_workers.py [--duration 8] [--rounds 3] [--workers 2 5]
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
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import TypeVar

from http_hello import DSN, free_port, running

from prefork.compiled import build

T = TypeVar("T")
BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PY = sys.executable


def commands(workers: int, port: int, log: str = "") -> dict[str, list[str]]:
    prefork = [
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
        "--workers",
        str(workers),
        "--no-access-log",
        "--gevent-port",
        str(free_port()),  # not 8072: another prefork may hold it
        "--db-uri",
        DSN,
        "--data-dir",
        tempfile.mkdtemp(),
    ]
    if log:
        prefork += ["--logfile", log]
    return {
        "prefork": prefork,
        "gunicorn sync": [
            PY,
            "-m",
            "gunicorn",
            "-w",
            str(workers),
            "-k",
            "sync",
            "-b",
            f"127.0.0.1:{port}",
            "hello:app",
        ],
        "odoo-style werkzeug": [PY, str(BENCH / "odoo_style_server.py"), str(port), str(workers)],
        "granian": [
            PY,
            "-m",
            "granian",
            "--interface",
            "wsgi",
            "--workers",
            str(workers),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "hello:app",
        ],
    }


def wrk(
    port: int,
    connections: int,
    duration: int,
    close: bool,
    path: str = "/",
    extra: list[str] | None = None,
) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms)."""
    out = wrk_output(port, connections, duration, close, path, extra)
    return requests_per_second(out), percentile(out, "50%"), percentile(out, "99%")


def wrk_output(
    port: int,
    connections: int,
    duration: int,
    close: bool,
    path: str = "/",
    extra: list[str] | None = None,
) -> str:
    """What `wrk -t1 --latency` prints for one run."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", *(extra or [])]
    if close:
        command += ["-H", "Connection: close"]
    return subprocess.run(
        [*command, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True
    ).stdout


def requests_per_second(out: str) -> float:
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def percentile(out: str, label: str) -> float:
    """A latency of wrk's output in ms: a percentile ("99%") or a column ("Latency")."""
    pattern = rf"{label}\s+([\d.]+)(us|ms|s|m)\b"
    if label == "Latency":  # average, standard deviation, then the max
        pattern = r"Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s|m)\b"
    value, unit = re.search(pattern, out).groups()  # type: ignore[union-attr]
    return float(value) * _UNITS[unit]


def alternate(variants: dict[str, Callable[[], T]], rounds: int) -> dict[str, list[T]]:
    """Each variant measured once per round, in turn, so that a drifting machine weighs on
    all of them alike; the figures of each, in round order."""
    rates: dict[str, list[T]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, measure in variants.items():
            rates[name].append(measure())
    return rates


def throughput(worker_counts: list[int], duration: int, rounds: int) -> None:
    print(
        "| workers | wrk -c | connection | server | req/s | p50 ms | p99 ms | prefork req/s ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for workers in worker_counts:
        for connections in (10, 100):
            for close in (False, True):
                mode = "close" if close else "keep-alive"
                rows = measure_each(
                    lambda port, w=workers: commands(w, port), connections, duration, close, rounds
                )
                for name, rate, p50, p99, ratio in rows:
                    print(
                        f"| {workers} | {connections} | {mode} | {name} | {rate:,.0f} | "
                        f"{p50:.2f} | {p99:.2f} | {ratio} |",
                        flush=True,
                    )


def measure_each(
    commands_for: Callable[[int], dict[str, list[str]]],
    connections: int,
    duration: int,
    close: bool,
    rounds: int = 1,
) -> list[tuple[str, float, float, float, str]]:
    """Every server at once, each warmed up for 2 s, then measured in turn for `rounds`
    rounds (a drifting machine weighs on all alike): (name, req/s, p50, p99, prefork's
    ratio), each figure the median of its rounds."""
    with ExitStack() as stack:
        ports = {}
        for name in commands_for(0):
            port = ports[name] = free_port()
            stack.enter_context(running(commands_for(port)[name], port))
            wrk(port, connections, 2, close)
        figures = alternate(
            {
                name: partial(wrk, port, connections, duration, close)
                for name, port in ports.items()
            },
            rounds,
        )
    medians = {
        name: tuple(statistics.median(values) for values in zip(*runs, strict=True))
        for name, runs in figures.items()
    }
    base = medians["prefork"][0]
    return [
        (name, rate, p50, p99, "1.00x" if name == "prefork" else f"{base / rate:.2f}x")
        for name, (rate, p50, p99) in medians.items()
    ]


def busy_worker_latency(duration: int) -> None:
    """Fast requests while one of two workers burns 5 s of CPU in one request."""
    print("\n| server (2 workers) | connection | fast req/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    app_cmds = {
        "prefork": [
            PY,
            "-m",
            "prefork",
            "run",
            "--app",
            "burn:app",
            "--http-interface",
            "127.0.0.1",
            "-p",
            "{port}",
            "--workers",
            "2",
            "--no-access-log",
            "--db-uri",
            DSN,
            "--data-dir",
            tempfile.mkdtemp(),
        ],
        "gunicorn sync": [
            PY,
            "-m",
            "gunicorn",
            "-w",
            "2",
            "-k",
            "sync",
            "-b",
            "127.0.0.1:{port}",
            "burn:app",
        ],
    }
    for name, template in app_cmds.items():
        for close in (False, True):
            port = free_port()
            command = [part.replace("{port}", str(port)) for part in template]
            with running(command, port):
                wrk(port, 10, 2, close)
                burner = threading.Thread(target=_fetch, args=(port, "/burn?s=5"))
                burner.start()
                time.sleep(0.3)
                rate, p50, p99 = wrk(port, 10, min(duration, 4), close)
                burner.join()
            mode = "close" if close else "keep-alive"
            print(f"| {name} | {mode} | {rate:,.0f} | {p50:.2f} | {p99:.2f} |", flush=True)


def _fetch(port: int, path: str) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=60) as response:
        response.read()


def replacement_time(duration: int) -> None:
    """How recycling by limit_request weighs on a keep-alive load (2 workers, wrk -c10):
    the throughput with a recycle every 2,000 requests against none, alternated over three
    rounds; and from the master's log, the overlap of each recycled worker with its
    successor (from the successor's fork to the old worker's exit: the old one serves on
    until the new one is ready)."""
    log = tempfile.mktemp(suffix=".log")
    port, quiet_port = free_port(), free_port()
    recycling = [*commands(2, port, log)["prefork"], "--limit-request", "2000"]
    quiet = [*commands(2, quiet_port)["prefork"], "--limit-request", "100000000"]
    with running(recycling, port), running(quiet, quiet_port):
        served = wrk(port, 10, 2, False)[0] * 2  # the 2 s warm-up (wrk reports a rate)
        wrk(quiet_port, 10, 2, False)
        rates = alternate(
            {
                "recycling": lambda: wrk(port, 10, duration, False)[0],
                "none": lambda: wrk(quiet_port, 10, duration, False)[0],
            },
            3,
        )
    served += sum(rates["recycling"]) * duration
    text = Path(log).read_text()
    os.unlink(log)
    overlaps = _overlaps(text)
    with_recycling, without = (statistics.median(rates[k]) for k in ("recycling", "none"))
    print(
        f"\nrecycling every 2,000 requests (2 workers, keep-alive, -c10): {with_recycling:,.0f} "
        f"req/s against {without:,.0f} without, {with_recycling / without:.2f}x"
    )
    if overlaps:
        overlaps.sort()
        print(
            f"{len(overlaps)} recycles, one per {served / len(overlaps):,.0f} requests served "
            "(a worker serves on past its limit until its successor is ready); the "
            f"successor forked before the old worker's exit by a "
            f"median {overlaps[len(overlaps) // 2] * 1000:.0f} ms, min "
            f"{overlaps[0] * 1000:.0f} ms (negative: a gap; log timestamps, 1 ms resolution)"
        )


def _overlaps(log: str) -> list[float]:
    """For each worker that exited by request-limit: its exit time minus the fork time of
    the next worker of the same role spawned after it (negative: that successor was forked
    only after the exit, a gap)."""
    events = re.findall(
        r"(\d\d:\d\d:\d\d,\d{3}) \d+ \w+ prefork\.master: (?:spawned (http worker #\d) "
        r"pid=(\d+)|(http worker #\d) \(pid (\d+)\) exited: request-limit)",
        log,
    )
    spawns = [(role, _seconds(at), pid) for at, role, pid, _, _ in events if role]
    overlaps = []
    for at, _, _, role, pid in events:
        if not role:
            continue  # a spawn
        own = next((i for i, spawn in enumerate(spawns) if spawn[2] == pid), None)
        later = [] if own is None else [t for r, t, _ in spawns[own + 1 :] if r == role]
        if later:
            overlaps.append(_seconds(at) - later[0])
    return overlaps


def _seconds(stamp: str) -> float:
    hours, minutes, rest = stamp.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(rest.replace(",", "."))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 5])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.chdir(BENCH)
    print(f"prefork's request path: {build()}\n")  # ROOT's, which the servers import too
    throughput(args.workers, args.duration, args.rounds)
    busy_worker_latency(args.duration)
    replacement_time(args.duration)


if __name__ == "__main__":
    main()
