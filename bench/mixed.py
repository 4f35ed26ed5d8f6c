"""Slow requests and slow clients next to fast ones: prefork against gunicorn sync, granian,
uWSGI and bjoern (forked), at equal worker counts, in one run on one machine.

1. Mixed load (4 workers): two clients loop on a CPU-bound request (`/slow?s=0.3`, also
   0.1 with --slow) while `wrk -t1 -c20 --latency` measures the fast endpoint on keep-alive
   connections. Every server runs at once; each is measured in turn for --rounds rounds and
   each figure is the median of its rounds. The ratios are prefork's p99 and max over the
   other server's (below 1: prefork's fast requests waited less). wrk's latencies count
   only answered requests, so the table also says how many of 20 keep-alive connections
   got answers within 3 s under the same load (a server that serves a few connections and
   leaves the rest waiting looks fast to wrk).
2. Slow readers (2 workers): eight clients ask for an 8 MiB body (built per request) and
   never read it; meanwhile one client sends fast requests one after another (5 s timeout
   each): their median and max latency, how many were answered, and the largest RSS of a
   worker meanwhile.
3. The access log's cost (bench/access_log.py): prefork's default access log against none.

Run: python bench/mixed.py [--duration 8] [--rounds 3] [--slow 0.3 0.1] [--skip-access-log]
"""

from __future__ import annotations

import argparse
import http.client
import os
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import psutil
from access_log import access_log_overhead
from http_hello import BENCH, DSN, free_port, running, wait_port
from http_workers import alternate, percentile, requests_per_second, wrk_output

from prefork.compiled import build

PY = sys.executable
APP = "mixed_app:app"
SLOW_CLIENTS = 2
STALLED_READERS = 8


def commands(workers: int, port: int) -> dict[str, list[str]]:
    """Each server with its defaults, but no access log (gunicorn, granian and bjoern
    have none by default; prefork's and uWSGI's are turned off)."""
    return {
        "prefork": [
            PY,
            "-m",
            "prefork",
            "run",
            "--app",
            APP,
            "--http-interface",
            "127.0.0.1",
            "-p",
            str(port),
            "--workers",
            str(workers),
            "--no-access-log",
            "--max-cron-threads",
            "0",
            "--gevent-port",
            str(free_port()),
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
            str(workers),
            "-k",
            "sync",
            "-b",
            f"127.0.0.1:{port}",
            APP,
        ],
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
            APP,
        ],
        "uWSGI": [
            str(Path(PY).with_name("uwsgi")),
            "--master",
            "--processes",
            str(workers),
            "--http11-socket",
            f"127.0.0.1:{port}",
            "--module",
            APP,
            "--pythonpath",
            str(BENCH),
            "--disable-logging",
            "--die-on-term",
            "--need-app",
        ],
        "bjoern (forked)": [PY, str(BENCH / "bjoern_server.py"), APP, str(port), str(workers)],
    }


# -- 1. mixed load ---------------------------------------------------------------------------


def wrk_latency(port: int, duration: int) -> tuple[float, float, float, float]:
    """(requests/s, p50 ms, p99 ms, max ms) of the fast endpoint."""
    out = wrk_output(port, 20, duration, False)
    return (
        requests_per_second(out),
        percentile(out, "50%"),
        percentile(out, "99%"),
        percentile(out, "Latency"),
    )


def with_slow_clients(
    port: int,
    seconds: float,
    measure: Callable[[], tuple[float, ...]],
) -> tuple[float, ...]:
    """`measure()` while SLOW_CLIENTS keep-alive clients loop on /slow?s=`seconds`."""
    stop = threading.Event()

    def loop() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while not stop.is_set():
            conn.request("GET", f"/slow?s={seconds}")
            conn.getresponse().read()
        conn.close()

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(SLOW_CLIENTS)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    try:
        return measure()
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)


def mixed_load(workers: int, slow: float, duration: int, rounds: int) -> None:
    print(
        f"\nMixed load: {workers} workers, {SLOW_CLIENTS} clients looping on a {slow:g} s "
        f"CPU-bound request, wrk -t1 -c20 on the fast endpoint (medians of {rounds} rounds)"
    )
    print(
        "\n| server | fast req/s | p50 ms | p99 ms | max ms | connections answered | "
        "prefork p99 / this | prefork max / this |"
    )
    print("|---|---|---|---|---|---|---|---|")
    with ExitStack() as stack:
        ports = {}
        for name in commands(workers, 0):
            port = ports[name] = free_port()
            stack.enter_context(running(commands(workers, port)[name], port))
            wrk_latency(port, 1)  # warm-up
        figures = alternate(
            {
                name: partial(with_slow_clients, port, slow, partial(wrk_latency, port, duration))
                for name, port in ports.items()
            },
            rounds,
        )
        reached = {
            name: with_slow_clients(port, slow, lambda p=port: (connections_answered(p),))[0]
            for name, port in ports.items()
        }
    medians = {
        name: [statistics.median(values) for values in zip(*runs, strict=True)]
        for name, runs in figures.items()
    }
    _, _, p99, worst = medians["prefork"]
    for name, (rate, p50, other_p99, other_max) in medians.items():
        print(
            f"| {name} | {rate:,.0f} | {p50:.2f} | {other_p99:.1f} | {other_max:.0f} | "
            f"{reached[name]:.0f}/20 | {p99 / other_p99:.2f}x | {worst / other_max:.2f}x |",
            flush=True,
        )


def connections_answered(port: int, count: int = 20, seconds: float = 3.0) -> int:
    """How many of `count` keep-alive connections, each sending requests one after
    another, had at least one answer within `seconds`."""
    selector = selectors.DefaultSelector()
    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    answered: set[int] = set()
    socks = []
    for index in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(request)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, index)
        socks.append(sock)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and len(answered) < count:
        for key, _ in selector.select(0.2):
            if key.fileobj.recv(65536):  # type: ignore[union-attr]
                answered.add(key.data)
    for sock in socks:
        sock.close()
    return len(answered)


# -- 2. slow readers -------------------------------------------------------------------------


def stalled_readers(port: int, count: int) -> list[socket.socket]:
    """`count` clients that ask for /big and read nothing (small receive buffers)."""
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: bench\r\n\r\n")
        socks.append(sock)
    return socks


def fast_requests(port: int, duration: float) -> tuple[list[float], int]:
    """Latencies (ms) of fast requests sent one after another on fresh connections, and
    how many failed (timed out after 5 s, refused, reset)."""
    latencies, failed = [], 0
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/")
            conn.getresponse().read()
            conn.close()
            latencies.append((time.monotonic() - started) * 1000)
        except OSError:
            failed += 1
    return latencies, failed


def worker_rss(server_pid: int) -> int:
    """The largest RSS among the server's child processes."""
    try:
        children = psutil.Process(server_pid).children(recursive=True)
    except psutil.Error:
        return 0
    sizes = []
    for child in children:
        try:
            sizes.append(child.memory_info().rss)
        except psutil.Error:
            continue
    return max(sizes, default=0)


def slow_readers(workers: int, duration: int) -> None:
    print(
        f"\nSlow readers: {workers} workers, {STALLED_READERS} clients that never read an "
        f"8 MiB response; fast requests one after another for {duration} s"
    )
    print("\n| server | answered | failed | median ms | max ms | largest worker RSS MiB |")
    print("|---|---|---|---|---|---|")
    for name in commands(workers, 0):
        port = free_port()
        command = commands(workers, port)[name]
        env = {**os.environ, "PYTHONPATH": f"{BENCH}:{BENCH.parent}"}
        proc = subprocess.Popen(
            command, cwd=BENCH, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_port(port)
            socks = stalled_readers(port, STALLED_READERS)
            time.sleep(0.5)
            peak = [0]
            sampler = threading.Thread(
                target=_sample_rss, args=(proc.pid, peak, duration), daemon=True
            )
            sampler.start()
            latencies, failed = fast_requests(port, duration)
            sampler.join()
            for sock in socks:
                sock.close()
        finally:
            proc.terminate()
            proc.wait(30)
        median = statistics.median(latencies) if latencies else float("nan")
        worst = max(latencies, default=float("nan"))
        print(
            f"| {name} | {len(latencies):,} | {failed} | {median:.2f} | {worst:.0f} | "
            f"{peak[0] / (1 << 20):.0f} |",
            flush=True,
        )


def _sample_rss(pid: int, peak: list[int], duration: float) -> None:
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        peak[0] = max(peak[0], worker_rss(pid))
        time.sleep(0.25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slow", type=float, nargs="+", default=[0.3])
    parser.add_argument("--skip-access-log", action="store_true")
    args = parser.parse_args()
    os.chdir(BENCH)
    print(f"prefork's request path: {build()}")
    for slow in args.slow:
        mixed_load(4, slow, args.duration, args.rounds)
    slow_readers(2, args.duration)
    if not args.skip_access_log:
        print("\nThe access log's cost (2 workers, hello world)\n")
        access_log_overhead(5, args.rounds)


if __name__ == "__main__":
    main()
