"""Realtime benchmark: prefork's realtime process against a plain `websockets` broadcast
server and a gevent server doing the same work (bench/realtime_anchors.py), in one run.

For each server, with the same asyncio websocket client and the same publisher:
1. idle: N connections (10,000 by default) subscribed and idle; the serving process's RSS;
2. latency: 1,000 subscribers on one channel, messages published at a steady rate through
   PostgreSQL (prefork: a committed bus message; the anchors: a NOTIFY carrying the frame);
   publish -> receive p50/p99 over every delivery;
3. fan-out: 100 subscribers, a burst of messages published back to back; deliveries/s from
   the first publish to the last delivery.

The client and the publisher share the 2 vCPUs with the server: the absolute latencies
include the client's own delays, which is why the anchors are measured with the same client
in the same run.

Run: python bench/realtime.py [--idle 10000] [--subscribers 1000] [--messages 200]
     (BENCH_DSN names the PostgreSQL database; the machine's by default)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import psycopg
from http_hello import DSN, free_port, wait_port
from websockets.asyncio.client import ClientConnection, connect

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PY = sys.executable
SERVERS = ("prefork", "websockets", "gevent")
sys.path.insert(0, str(ROOT))

from prefork.bus.store import write  # noqa: E402


def command(name: str, port: int) -> list[str]:
    if name == "prefork":
        return [
            PY,
            "-m",
            "prefork",
            "run",
            "--workers",
            "1",
            "--max-cron-threads",
            "0",
            "--http-interface",
            "127.0.0.1",
            "-p",
            str(free_port()),
            "--gevent-port",
            str(port),
            "--db-uri",
            DSN,
            "--data-dir",
            tempfile.mkdtemp(),
            "--no-access-log",
            "--db_maxconn_gevent",
            "16",
        ]
    return [PY, str(BENCH / "realtime_anchors.py"), name, str(port), DSN]


def serving_process(name: str, proc: subprocess.Popen[bytes]) -> psutil.Process:
    if name != "prefork":
        return psutil.Process(proc.pid)
    for _ in range(100):
        for child in psutil.Process(proc.pid).children():
            if child.cmdline() and child.cmdline()[0].startswith("prefork: realtime"):
                return child
        time.sleep(0.1)
    raise RuntimeError("no realtime process")


class Publisher:
    """Publishes the way each server receives messages, one committed message at a time."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.conn = psycopg.connect(DSN, autocommit=name != "prefork")
        self.seq = 0

    def publish(self, channel: str, message: dict[str, Any]) -> None:
        self.seq += 1
        if self.name == "prefork":
            write(self.conn, channel, message)
            self.conn.commit()
            return
        item = json.dumps({"id": self.seq, "message": message}, separators=(",", ":"))
        self.conn.execute("SELECT pg_notify('anchor', %s)", (f"{channel}\n{item}",))


class Clients:
    """Websocket clients subscribed to one channel; `on_message` sees every message."""

    def __init__(
        self, port: int, count: int, channel: str, on_message: Callable[[int, dict[str, Any]], None]
    ) -> None:
        self.port, self.count, self.channel = port, count, channel
        self.on_message = on_message
        self.sockets: list[ClientConnection] = []
        self.readers: list[asyncio.Task[None]] = []
        self.markers: set[tuple[int, int]] = set()

    async def open(self) -> None:
        for start in range(0, self.count, 250):
            batch = range(start, min(start + 250, self.count))
            self.sockets += await asyncio.gather(*(self._open_one() for _ in batch))
        self.readers = [
            asyncio.ensure_future(self._read(i, ws)) for i, ws in enumerate(self.sockets)
        ]

    async def _open_one(self) -> ClientConnection:
        ws = await connect(
            f"ws://127.0.0.1:{self.port}/websocket",
            compression=None,
            open_timeout=120,
            ping_interval=None,
            max_size=1 << 22,
        )
        await ws.send(
            json.dumps({"event_name": "subscribe", "data": {"channels": [self.channel], "last": 0}})
        )
        return ws

    async def _read(self, index: int, ws: ClientConnection) -> None:
        try:
            async for frame in ws:
                for item in json.loads(frame):
                    message = item["message"]
                    if message.get("kind") == "marker":
                        self.markers.add((index, message["n"]))
                    else:
                        self.on_message(index, message)
        except Exception:
            return

    async def wait_subscribed(self, publisher: Publisher, timeout: float = 180) -> None:
        """Publish markers until every client has received one: all are subscribed."""
        deadline = time.monotonic() + timeout
        n = 0
        while time.monotonic() < deadline:
            n += 1
            await asyncio.to_thread(publisher.publish, self.channel, {"kind": "marker", "n": n})
            await asyncio.sleep(1.0)
            if len({index for index, _ in self.markers}) == self.count:
                return
        raise RuntimeError(
            f"only {len({i for i, _ in self.markers})} of {self.count} clients subscribed"
        )

    async def close(self) -> None:
        for reader in self.readers:
            reader.cancel()
        await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)


async def idle(name: str, port: int, process: psutil.Process, count: int) -> float:
    publisher = Publisher(name)
    clients = Clients(port, count, f"idle.{uuid.uuid4().hex}", lambda i, m: None)
    await clients.open()
    await clients.wait_subscribed(publisher)
    await asyncio.sleep(2)
    rss = process.memory_info().rss / 2**20
    await clients.close()
    return rss


async def latency(
    name: str, port: int, subscribers: int, messages: int
) -> tuple[float, float, int]:
    publisher = Publisher(name)
    delays: list[float] = []

    def received(index: int, message: dict[str, Any]) -> None:
        delays.append(time.time() - message["sent"])

    channel = f"latency.{uuid.uuid4().hex}"  # no history from an earlier run
    clients = Clients(port, subscribers, channel, received)
    await clients.open()
    await clients.wait_subscribed(publisher)
    for _ in range(messages):
        await asyncio.to_thread(publisher.publish, channel, {"sent": time.time()})
        await asyncio.sleep(0.05)
    await asyncio.sleep(2)
    await clients.close()
    if len(delays) < subscribers * messages:
        print(f"  {name}: {len(delays)} of {subscribers * messages} deliveries", flush=True)
    ms = sorted(d * 1000 for d in delays)
    return statistics.median(ms), ms[int(len(ms) * 0.99)], len(ms)


async def fan_out(name: str, port: int, subscribers: int, messages: int) -> float:
    publisher = Publisher(name)
    expected = subscribers * messages
    done = asyncio.Event()
    count = [0, 0.0]

    def received(index: int, message: dict[str, Any]) -> None:
        count[0] += 1
        if count[0] == expected:
            count[1] = time.monotonic()
            done.set()

    channel = f"fan.{uuid.uuid4().hex}"
    clients = Clients(port, subscribers, channel, received)
    await clients.open()
    await clients.wait_subscribed(publisher)

    def burst() -> None:
        for i in range(messages):
            publisher.publish(channel, {"n": i})

    started = time.monotonic()
    await asyncio.to_thread(burst)
    try:
        await asyncio.wait_for(done.wait(), 120)
    except TimeoutError:
        print(f"  {name}: {count[0]} of {expected} deliveries", flush=True)
        count[1] = time.monotonic()
    await clients.close()
    return count[0] / (count[1] - started)


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def measure(name: str, args: argparse.Namespace) -> dict[str, float]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{BENCH}:{ROOT}"}
    proc = subprocess.Popen(
        command(name, port),
        cwd=BENCH,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        process = serving_process(name, proc)
        time.sleep(1)
        rss = asyncio.run(idle(name, port, process, args.idle))
        before = _cpu(process)
        p50, p99, deliveries = asyncio.run(latency(name, port, args.subscribers, args.messages))
        cpu_us = (_cpu(process) - before) / deliveries * 1e6
        rate = asyncio.run(fan_out(name, port, 100, args.burst))
        return {"rss": rss, "p50": p50, "p99": p99, "cpu_us": cpu_us, "rate": rate}
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--subscribers", type=int, default=1_000)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--burst", type=int, default=2_000)
    parser.add_argument("--servers", nargs="+", default=list(SERVERS))
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the servers inherit it
    results = {}
    for name in args.servers:
        results[name] = measure(name, args)
        print(f"{name}: {results[name]}", flush=True)
    base = results.get("prefork")
    print(
        f"\n| server | RSS, {args.idle:,} idle websockets | publish->receive p50 ms | "
        f"p99 ms ({args.subscribers:,} subscribers) | server CPU per delivery, us | "
        f"fan-out deliveries/s (100 subscribers) | prefork p99 ratio | "
        f"prefork fan-out ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        p99_ratio = f"{r['p99'] / base['p99']:.2f}x" if base else "-"
        rate_ratio = f"{base['rate'] / r['rate']:.2f}x" if base else "-"
        print(
            f"| {name} | {r['rss']:.0f} MiB | {r['p50']:.1f} | {r['p99']:.1f} | "
            f"{r['cpu_us']:.1f} | {r['rate']:,.0f} | {p99_ratio} | {rate_ratio} |"
        )


if __name__ == "__main__":
    main()
