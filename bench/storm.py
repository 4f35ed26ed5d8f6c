"""Catch-up storm on two hosts: many websocket clients reconnect at once, each far behind.

Two prefork servers (two "hosts" on loopback, each with its own data_dir and 2 HTTP
workers) on one PostgreSQL database. N clients subscribe (half on each host's realtime
port), then go away; M messages are published; then all N reconnect at the same moment
with their last id and catch up. Measured, for the prefork given with --prefork (so one
run can compare two installs, e.g. a checkout before a change):
- the most connections the database held at once during the storm (all hosts), and the
  server's max_connections;
- HTTP requests that use the database, sent to both hosts throughout the storm: how many
  got 503 (or failed), and their p99;
- the time until every client had every message (drain);
- the connections still held IDLE seconds after the storm.

Run: python bench/storm.py [--clients 500] [--messages 2000] [--idle 75] [--prefork PATH]
     (BENCH_DSN names the PostgreSQL server; the machine's by default)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import psycopg
from http_hello import DSN, free_port, wait_port
from psycopg.conninfo import make_conninfo
from websockets.asyncio.client import connect

from prefork.bus.store import write

HERE = Path(__file__).resolve().parent
CHANNEL = "storm"


def start_host(
    prefork: str, dsn: str, port: int, realtime: int, data: Path
) -> subprocess.Popen[bytes]:
    log = open(data.with_suffix(".log"), "wb")  # noqa: SIM115 - kept open by the process
    proc = subprocess.Popen(
        [
            prefork,
            "run",
            "--app",
            "storm_app:app",
            "--http-interface",
            "127.0.0.1",
            "-p",
            str(port),
            "--gevent-port",
            str(realtime),
            "--workers",
            "2",
            "--max-cron-threads",
            "0",
            "--db-uri",
            dsn,
            "--data-dir",
            str(data),
            "--log-level",
            "warn",
        ],
        cwd=HERE,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_port(port, 30)
    wait_port(realtime, 30)
    return proc


def connections(admin: str, name: str) -> int:
    with psycopg.connect(admin, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)
        ).fetchone()
    return int(row[0]) if row else 0


class Probe(threading.Thread):
    """Database requests to every host, one after another, until stopped."""

    def __init__(self, ports: list[int]) -> None:
        super().__init__(daemon=True)
        self.ports, self.stop = ports, threading.Event()
        self.ok, self.failed, self.latencies = 0, 0, []  # type: ignore[var-annotated]

    def run(self) -> None:
        while not self.stop.is_set():
            for port in self.ports:
                started = time.monotonic()
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/db", timeout=30):
                        self.ok += 1
                except (urllib.error.URLError, OSError):
                    self.failed += 1
                self.latencies.append(time.monotonic() - started)
            time.sleep(0.02)


async def subscribe_and_read(port: int, last: int, count: int, go: asyncio.Event) -> float:
    async with connect(
        f"ws://127.0.0.1:{port}/websocket", open_timeout=60, max_size=2**24, ping_interval=None
    ) as ws:
        await go.wait()
        await ws.send(
            json.dumps({"event_name": "subscribe", "data": {"channels": [CHANNEL], "last": last}})
        )
        seen = 0
        while seen < count:
            seen += len(json.loads(await ws.recv()))
        return time.monotonic()


async def storm(ports: list[int], clients: int, last: int, count: int) -> tuple[float, int]:
    go = asyncio.Event()
    tasks = [
        asyncio.ensure_future(subscribe_and_read(ports[i % 2], last, count, go))
        for i in range(clients)
    ]
    await asyncio.sleep(5)  # every client connected before the storm
    started = time.monotonic()
    go.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    done = [r for r in results if isinstance(r, float)]
    return (max(done) - started if done else float("nan")), len(done)


def publish(dsn: str, count: int) -> int:
    """`count` messages in one transaction; the highest delivery id once the bus has
    ordered them all."""
    with psycopg.connect(dsn) as conn:
        for n in range(count):
            write(conn, CHANNEL, {"n": n})
    deadline = time.monotonic() + 60
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE id IS NULL), max(id) FROM prefork.bus_message"
            ).fetchone()
            if row is not None and row[0] == 0 and row[1] is not None:
                return int(row[1])
            time.sleep(0.1)
    raise RuntimeError("the bus did not order the messages")


def run(args: argparse.Namespace) -> dict[str, Any]:
    name = f"prefork_bench_storm_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        limit = int(admin.execute("SHOW max_connections").fetchone()[0])  # type: ignore[index]
    dsn = make_conninfo(DSN, dbname=name)
    uri = f"postgresql://postgres@127.0.0.1:5432/{name}"
    tmp = Path(tempfile.mkdtemp(prefix="storm-"))
    http_ports = [free_port(), free_port()]
    realtime_ports = [free_port(), free_port()]
    hosts = [
        start_host(args.prefork, uri, http_ports[i], realtime_ports[i], tmp / f"h{i}")
        for i in range(2)
    ]
    try:
        last = publish(dsn, 1)
        publish(dsn, args.messages)
        probe = Probe(http_ports)
        probe.start()
        peak = [0]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                peak[0] = max(peak[0], connections(DSN, name))
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        drain, done = asyncio.run(storm(realtime_ports, args.clients, last, args.messages))
        sampling.set()
        probe.stop.set()
        probe.join()
        sampler.join()
        after = connections(DSN, name)
        time.sleep(args.idle)
        idle = connections(DSN, name)
        latencies = sorted(probe.latencies) or [0.0]
        return {
            "prefork": args.prefork,
            "clients": args.clients,
            "messages": args.messages,
            "caught_up": done,
            "drain_s": round(drain, 1),
            "peak_connections": peak[0],
            "max_connections": limit,
            "http_ok": probe.ok,
            "http_failed": probe.failed,
            "http_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
            "connections_after": after,
            f"connections_after_{args.idle}s_idle": idle,
        }
    finally:
        for proc in hosts:
            proc.terminate()
        for proc in hosts:
            proc.wait(30)
        with psycopg.connect(DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--idle", type=int, default=75)
    parser.add_argument(
        "--prefork", default=os.path.join(os.path.dirname(sys.executable), "prefork")
    )
    print(json.dumps(run(parser.parse_args())))


if __name__ == "__main__":
    main()
