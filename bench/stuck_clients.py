"""Websocket clients that never read: the realtime process's memory while N such clients and
one reading client are subscribed to a channel that gets M messages of S KiB, with
websocket_queue_limit off (0) and at its default (4 MiB), in one run. The issue that
bounded it measured 5 clients x 950 messages of 64 KiB: 42 -> 320 MiB.

Run: python bench/stuck_clients.py [--clients 5] [--messages 950] [--kib 64]
     (BENCH_DSN: a PostgreSQL where databases can be created)
Prints a Markdown table: resident memory before, at its peak and after, clients closed.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import psutil
import psycopg
from cron_idle import fresh_database
from http_hello import free_port, wait_port
from websockets.sync.client import ClientConnection, connect

from prefork.bus.store import write

HERE = Path(__file__).resolve().parent
PREFORK = str(Path(sys.executable).with_name("prefork"))
CHANNEL = "stuck"


def start(dsn: str, limit: str) -> tuple[subprocess.Popen[bytes], int]:
    port, realtime = free_port(), free_port()
    proc = subprocess.Popen(
        [
            PREFORK,
            "run",
            "--app",
            "hello:app",
            "--http-interface",
            "127.0.0.1",
            "-p",
            str(port),
            "--gevent-port",
            str(realtime),
            "--workers",
            "1",
            "--max-cron-threads",
            "0",
            "--db-uri",
            dsn,
            "--data-dir",
            tempfile.mkdtemp(),
            "--log-level",
            "warn",
            "--websocket-queue-limit",
            limit,
        ],
        cwd=HERE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(realtime, 30)
    return proc, realtime


def realtime_process(master: int) -> psutil.Process:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for child in psutil.Process(master).children():
            if "prefork: realtime" in " ".join(child.cmdline()):
                return child
        time.sleep(0.1)
    raise RuntimeError("no realtime process")


def stuck_client(stack: ExitStack, port: int) -> ClientConnection:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    ws = stack.enter_context(
        connect(
            f"ws://127.0.0.1:{port}/websocket",
            sock=sock,
            max_queue=1,
            open_timeout=30,
            max_size=2**24,
            ping_interval=None,
        )
    )
    ws.send(json.dumps({"event_name": "subscribe", "data": {"channels": [CHANNEL]}}))
    return ws


def measure(dsn: str, limit: str, args: argparse.Namespace) -> dict[str, int]:
    proc, port = start(dsn, limit)
    try:
        with ExitStack() as stack:
            return _measure(stack, dsn, proc.pid, port, args)
    finally:
        proc.terminate()
        proc.wait(60)


def _measure(
    stack: ExitStack, dsn: str, master: int, port: int, args: argparse.Namespace
) -> dict[str, int]:
    process = realtime_process(master)
    stuck = [stuck_client(stack, port) for _ in range(args.clients)]
    reader = stack.enter_context(
        connect(f"ws://127.0.0.1:{port}/websocket", max_size=2**24, ping_interval=None)
    )
    reader.send(json.dumps({"event_name": "subscribe", "data": {"channels": [CHANNEL]}}))
    time.sleep(1)
    before = peak = process.memory_info().rss
    received = [0]

    def read() -> None:
        while received[0] < args.messages:
            received[0] += len(json.loads(reader.recv(timeout=120)))

    reading = threading.Thread(target=read, daemon=True)
    reading.start()
    pad = "x" * (args.kib << 10)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for n in range(args.messages):
            write(conn, CHANNEL, {"n": n, "pad": pad})
            if n % 20 == 0:
                peak = max(peak, process.memory_info().rss)
    while reading.is_alive():
        peak = max(peak, process.memory_info().rss)
        reading.join(0.1)
    after = process.memory_info().rss
    closed = sum(1 for ws in stuck if _closed_1013(ws))
    return {
        "before": before,
        "peak": peak,
        "after": after,
        "closed": closed,
        "received": received[0],
    }


def _closed_1013(ws: ClientConnection) -> bool:
    try:
        while True:
            ws.recv(timeout=5)
    except TimeoutError:
        return False
    except Exception as exc:
        rcvd = getattr(exc, "rcvd", None)
        return rcvd is not None and rcvd.code == 1013


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--messages", type=int, default=950)
    parser.add_argument("--kib", type=int, default=64)
    args = parser.parse_args()
    mib = 1 << 20
    print(
        f"{args.clients} clients that never read, 1 that reads, {args.messages} messages "
        f"of {args.kib} KiB\n"
    )
    print(
        "| websocket_queue_limit | RSS before | RSS peak | RSS after | never-readers closed "
        "with 1013 | reader got |"
    )
    print("|---|---|---|---|---|---|")
    for limit in ("0", "4M"):
        r = measure(fresh_database("prefork_bench_stuck"), limit, args)  # no history
        print(
            f"| {limit} | {r['before'] // mib} MiB | {r['peak'] // mib} MiB | "
            f"{r['after'] // mib} MiB | {r['closed']} of {args.clients} | "
            f"{r['received']} of {args.messages} |"
        )


if __name__ == "__main__":
    main()
