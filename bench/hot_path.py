"""The Python cost of one request in an HTTP worker, without the network.

Builds the stack a multi-processing HTTP worker serves with (scoreboard slot, limits,
metrics, sessions, the database middleware, prefork's routes) around the hello-world app,
and feeds it requests through a socket stand-in that returns the request and swallows the
response. What remains is the interpreter's work per request: parsing, the environ, the
WSGI call, the response head, the worker's bookkeeping. The system calls (recv, send,
epoll) are measured by the wrk benchmarks (http_workers.py), not here.

Two requests: wrk's (one header) and a browser's (twelve headers, a cookie).
Each figure is the best of --rounds rounds of --count requests, in microseconds.

With --layers, wrk's request through the stack built up one layer at a time: the HTTP
engine alone (parser, environ, response), then the worker's bookkeeping (scoreboard,
limits, the rebalancer's lock), metrics, sessions, the database transaction and prefork's
routes, which make the full stack; --layer NAME serves through one of them only (for
callgrind, whose instruction counts do not depend on the machine's load).

Run: python bench/hot_path.py [--count 50000] [--rounds 5] [--layers | --layer NAME]
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

from hello import app  # noqa: E402

from prefork import metrics  # noqa: E402
from prefork.config import Settings  # noqa: E402
from prefork.db.pool import PostgresDatabase  # noqa: E402
from prefork.http.connection import Connection  # noqa: E402
from prefork.workers.engine import make_handler  # noqa: E402
from prefork.workers.http import HTTPWorker  # noqa: E402
from prefork.workers.scoreboard import Scoreboard  # noqa: E402
from prefork.wsgi.handler import WSGIHandler  # noqa: E402

WRK = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8069\r\n\r\n"
BROWSER = (
    b"GET /web/assets/app.css?v=3 HTTP/1.1\r\nHost: shop.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
    b"Accept: text/css,*/*;q=0.1\r\nAccept-Language: en-US,en;q=0.5\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\nReferer: https://shop.example.com/shop\r\n"
    b"Connection: keep-alive\r\nCookie: frontend_lang=en_US; tz=Europe/Brussels\r\n"
    b"Sec-Fetch-Dest: style\r\nSec-Fetch-Mode: no-cors\r\nSec-Fetch-Site: same-origin\r\n"
    b"Pragma: no-cache\r\n\r\n"
)


class CannedSocket:
    """Always has the same request to read; takes any response whole."""

    family = socket.AF_INET

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.sent = 0

    def recv(self, size: int) -> bytes:
        return self.request

    def send(self, data: bytes) -> int:
        self.sent += 1
        return len(data)

    def fileno(self) -> int:
        return -1


def build_worker() -> HTTPWorker:
    data_dir = tempfile.mkdtemp()
    settings = Settings(
        http_port=8069,
        access_log=False,
        workers=2,
        data_dir=data_dir,
        db_uri="postgresql://nobody@127.0.0.1:1/none",
    )
    if metrics.current() is None:
        metrics.setup(settings)
    slot = Scoreboard(4).acquire(os.getpid())
    database = PostgresDatabase(settings.db_uri, 4, 1.0)  # never connects: hello needs none
    worker = HTTPWorker(settings, 1, slot, [], app, socket.socketpair()[0], database)
    worker.handler = make_handler(
        settings, app, worker.loop, multiprocess=True, draining=lambda: False, database=database
    )
    worker.max_requests = 1 << 62
    worker.lock.acquire()  # held by the serving loop except while the app runs
    return worker


def per_request(worker: HTTPWorker, request: bytes, count: int) -> float:
    sock = CannedSocket(request)
    conn = Connection(sock, ("127.0.0.1", 40000), worker.loop.limits)  # type: ignore[arg-type]
    worker.loop._conns.add(conn)
    started = time.perf_counter()
    for _ in range(count):
        worker.loop._on_readable(conn)
    elapsed = time.perf_counter() - started
    assert sock.sent == count, "every request must be answered"
    return elapsed / count * 1e6


def layer(worker: HTTPWorker, full: WSGIHandler, name: str) -> None:
    """Make `worker` serve through the stack up to layer `name` (see LAYERS)."""
    # prefork's routes around the database middleware around the app (each held as its
    # bound __call__ when it runs uncompiled, see prefork.wsgi.handler.direct)
    routes = full.app
    database = getattr(routes, "__self__", routes).app
    session_hook, db_hook = full.request_hooks
    stacks = {
        "engine": (app, None, ()),
        "worker": (app, None, ()),
        "metrics": (app, full.metrics, ()),
        "sessions": (app, full.metrics, (session_hook,)),
        "database": (database, full.metrics, (session_hook, db_hook)),
        "routes": (routes, full.metrics, (session_hook, db_hook)),
    }
    inner, counters, hooks = stacks[name]
    worker.handler = WSGIHandler(
        inner,
        full.environ,
        full.date,
        send_timeout=5.0,
        access_log=None,
        draining=lambda: False,
        metrics=counters,
        request_hooks=hooks,
    )
    worker.loop._dispatch = worker.handler.serve if name == "engine" else worker._serve


LAYERS = ["engine", "worker", "metrics", "sessions", "database", "routes"]


def layers(worker: HTTPWorker, count: int, rounds: int) -> None:
    full = worker.handler
    assert full is not None
    previous = 0.0
    for name in LAYERS:
        layer(worker, full, name)
        best = min(per_request(worker, WRK, count) for _ in range(rounds))
        added = f"+{best - previous:5.2f}" if previous else ""
        print(f"{name:9s} {best:6.2f} us/request {added}")
        previous = best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", choices=["wrk", "browser"])
    parser.add_argument("--layers", action="store_true")
    parser.add_argument("--layer", choices=LAYERS)
    args = parser.parse_args()
    os.chdir(BENCH)
    worker = build_worker()
    if args.layers:
        layers(worker, args.count, args.rounds)
        return
    if args.layer:
        assert worker.handler is not None
        layer(worker, worker.handler, args.layer)
    for name, request in (("wrk", WRK), ("browser", BROWSER)):
        if args.only and name != args.only:
            continue
        best = min(per_request(worker, request, args.count) for _ in range(args.rounds))
        print(f"{name:8s} {best:6.2f} us/request")


if __name__ == "__main__":
    main()
