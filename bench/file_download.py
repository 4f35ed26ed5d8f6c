"""A 100 MiB file download: prefork's wsgi.file_wrapper (sendfile) against gunicorn sync and
granian, on one machine, in one run, over loopback.

The application (bench/file_app.py) returns the file in `environ["wsgi.file_wrapper"]` when
the server offers one and reads it in 64 KiB blocks otherwise. Rows:
- prefork: file_wrapper, sent with sendfile(2);
- prefork, iterating: the same server, the application reading the file itself (what every
  prefork before wsgi.file_wrapper did);
- gunicorn sync: its file_wrapper, sent with sendfile(2);
- granian (WSGI interface): it offers no wsgi.file_wrapper, so the application reads blocks.

Every server has 2 workers and no access log; all run at once and are measured in turn,
--rounds times (medians). Per server: throughput of --sequential downloads one after another
and of --concurrent at once (MiB/s, over the wall time), and the CPU seconds the server's
whole process tree spent per GiB sent (psutil cpu_times, user + system, before and after).
The client reads with recv_into into one buffer, in this process: its CPU is not counted.

Run: python bench/file_download.py [--size-mib 100] [--sequential 8] [--concurrent 4]
     [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import psutil
from http_hello import DSN, free_port, running
from http_workers import alternate

from prefork.compiled import build

PY = sys.executable
APP = "file_app:app"
WORKERS = 2
MiB = 1 << 20
GiB = 1 << 30


def commands(port: int) -> dict[str, list[str]]:
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
            str(WORKERS),
            "--no-access-log",
            "--log-level",
            "warning",
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
            str(WORKERS),
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
            str(WORKERS),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            APP,
        ],
    }


# Each row: (server, path, what sends the file).
ROWS = [
    ("prefork", "/", "file_wrapper: sendfile(2)"),
    ("prefork", "/iterate", "the application reads 64 KiB blocks (before)"),
    ("gunicorn sync", "/", "file_wrapper: sendfile(2)"),
    ("granian", "/", "no file_wrapper: the application reads 64 KiB blocks"),
]


def download(port: int, path: str, check: bytes | None = None) -> int:
    """GET `path` on a new connection and read the body into one reused buffer; its size.
    With `check`, the body must be those bytes."""
    buffer = bytearray(MiB)
    view = memoryview(buffer)
    received = bytearray() if check is not None else None
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError(f"closed before the headers: {head[:200]!r}")
            head += chunk
        head, _, body = head.partition(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":", 1)[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
        )
        got = len(body)
        if received is not None:
            received += body
        while got < length:
            count = sock.recv_into(view)
            if not count:
                raise RuntimeError(f"closed after {got} of {length} bytes")
            got += count
            if received is not None:
                received += view[:count]
    if check is not None and received != check:
        raise RuntimeError(f"the body of {path} on port {port} differs from the file")
    return got


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and all its descendants so far."""
    total = 0.0
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def measure(port: int, path: str, pid: int, clients: int, count: int) -> tuple[float, float]:
    """(MiB/s, server CPU seconds per GiB) of `count` downloads by `clients` at a time."""
    sizes: list[int] = []

    def client(downloads: int) -> None:
        for _ in range(downloads):
            sizes.append(download(port, path))

    cpu = tree_cpu(pid)
    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(count // clients,)) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    spent = tree_cpu(pid) - cpu
    sent = sum(sizes)
    return sent / MiB / elapsed, spent / (sent / GiB)


def round_of(
    port: int, path: str, pid: int, sequential: int, concurrent: int
) -> tuple[float, float, float, float]:
    seq_rate, seq_cpu = measure(port, path, pid, 1, sequential)
    conc_rate, conc_cpu = measure(port, path, pid, concurrent, concurrent)
    return seq_rate, seq_cpu, conc_rate, conc_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=100)
    parser.add_argument("--sequential", type=int, default=8)
    parser.add_argument("--concurrent", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.chdir(Path(__file__).resolve().parent)
    with tempfile.TemporaryDirectory() as directory, ExitStack() as stack:
        path = Path(directory) / "download.bin"
        data = os.urandom(args.size_mib * MiB)
        path.write_bytes(data)
        env = {"FILE_DOWNLOAD_PATH": str(path)}
        servers = {}
        for name in commands(0):
            port = free_port()
            proc = stack.enter_context(running(commands(port)[name], port, env))
            servers[name] = (port, proc.pid)
        variants = {}
        for server, target, _ in ROWS:
            port, pid = servers[server]
            download(port, target, check=data)  # warm-up: page cache, imports; and correct
            variants[(server, target)] = partial(
                round_of, port, target, pid, args.sequential, args.concurrent
            )
        del data
        figures = alternate(variants, args.rounds)
    report(figures, args)


def report(
    figures: dict[tuple[str, str], list[tuple[float, float, float, float]]],
    args: argparse.Namespace,
) -> None:
    medians = {
        key: [statistics.median(values) for values in zip(*runs, strict=True)]
        for key, runs in figures.items()
    }
    base = medians[("prefork", "/")]
    print(
        f"prefork's request path: {build()}; {args.size_mib} MiB file, {WORKERS} workers, "
        f"{args.sequential} sequential and {args.concurrent} concurrent downloads per "
        f"round, medians of {args.rounds} rounds\n"
    )
    print(
        f"| server | the file is sent by | sequential MiB/s | {args.concurrent} at once "
        "MiB/s | CPU s/GiB sequential | CPU s/GiB at once | MiB/s vs prefork (seq, "
        "at once) | CPU/GiB vs prefork (seq, at once) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for server, target, how in ROWS:
        seq, seq_cpu, conc, conc_cpu = medians[(server, target)]
        name = server if target == "/" else f"{server}, iterating"
        print(
            f"| {name} | {how} | {seq:,.0f} | {conc:,.0f} | {seq_cpu:.2f} | "
            f"{conc_cpu:.2f} | {ratio(seq, base[0])}, {ratio(conc, base[2])} | "
            f"{ratio(seq_cpu, base[1])}, {ratio(conc_cpu, base[3])} |",
            flush=True,
        )


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "n/a"  # CPU times count in 10 ms ticks


if __name__ == "__main__":
    main()
