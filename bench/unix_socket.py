"""Behind nginx: each server's upstream on a TCP loopback port, then on a Unix socket.

One nginx (started by this script, on loopback ports) proxies to prefork (multi-processing),
gunicorn sync and granian (WSGI), each with the same worker count, each once over TCP and
once over a Unix socket (prefork `http_interface = unix:PATH`, gunicorn `--bind unix:PATH`,
granian `--uds PATH`). All servers run at once; wrk measures each upstream through nginx in
turn, with keep-alive from wrk to nginx and from nginx to the upstream (`keepalive 32`),
for --rounds rounds; each figure is the median of its rounds. The ratios compare servers
measured in the same round, on the same machine.

Run: python bench/unix_socket.py [--duration 5] [--rounds 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from http_hello import DSN, free_port, wait_port
from http_workers import wrk

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PY = sys.executable
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def commands(workers: int, address: str) -> dict[str, list[str]]:
    """name -> command serving on `address`: 'unix:PATH' or '127.0.0.1:PORT'."""
    unix = address.startswith("unix:")
    host, _, port = address.rpartition(":")
    prefork = [
        PY,
        "-m",
        "prefork",
        "run",
        "--app",
        "hello:app",
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
        "--unix-socket-mode",
        "0666",
        "--http-interface",
        address if unix else host,
        "-p",
        "0" if unix else port,
    ]
    granian = [PY, "-m", "granian", "--interface", "wsgi", "--workers", str(workers)]
    granian += (
        ["--uds", address[5:], "--uds-permissions", "438"]
        if unix
        else ["--host", host, "--port", port]
    )
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
            address,
            "--umask",
            "0",
            "hello:app",
        ],
        "granian": [*granian, "hello:app"],
    }


def wait_unix(path: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(path)
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {path}")


@contextmanager
def serving(command: list[str], address: str) -> Iterator[None]:
    """Each server imports hello:app from its working directory, bench/."""
    proc = subprocess.Popen(
        command, cwd=BENCH, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        if address.startswith("unix:"):
            wait_unix(address[5:])
        else:
            wait_port(int(address.rpartition(":")[2]))
        yield
    finally:
        proc.terminate()
        proc.wait(20)


def nginx_site(upstreams: dict[str, tuple[str, int]]) -> str:
    """One server block per upstream: name -> (backend address, listen port)."""
    blocks = []
    for number, (backend, listen) in enumerate(upstreams.values()):
        blocks.append(f"""
upstream u{number} {{ server {backend}; keepalive 32; }}
server {{
    listen 127.0.0.1:{listen};
    location / {{
        proxy_pass http://u{number};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
    }}
}}""")
    return "\n".join(blocks)


@contextmanager
def running_nginx(directory: Path, site: str, ports: list[int]) -> Iterator[None]:
    conf = directory / "nginx.conf"
    conf.write_text(f"""
pid {directory}/nginx.pid;
error_log {directory}/error.log;
daemon off;
worker_processes 1;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    {site}
}}
""")
    proc = subprocess.Popen(
        [NGINX, "-c", str(conf), "-p", str(directory)], stderr=subprocess.DEVNULL
    )
    try:
        for port in ports:
            wait_port(port)
        yield
    finally:
        proc.terminate()
        proc.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=10)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="pf-bench-"))
    directory.chmod(0o755)  # nginx's workers (nobody) reach the sockets in it
    upstreams: dict[str, tuple[str, int]] = {}
    servers: list[tuple[list[str], str]] = []
    for transport in ("tcp", "unix"):
        for name in commands(args.workers, "unix:/x"):
            address = (
                f"unix:{directory}/{name.split()[0]}.sock"
                if transport == "unix"
                else f"127.0.0.1:{free_port()}"
            )
            servers.append((commands(args.workers, address)[name], address))
            upstreams[f"{name}, {transport}"] = (address, free_port())
    results: dict[str, list[float]] = {key: [] for key in upstreams}
    with ExitStack() as stack:
        for command, address in servers:
            stack.enter_context(serving(command, address))
        stack.enter_context(
            running_nginx(
                directory, nginx_site(upstreams), [listen for _, listen in upstreams.values()]
            )
        )
        for _, listen in upstreams.values():  # warm-up
            wrk(listen, args.connections, 2, False)
        for _ in range(args.rounds):
            for key, (_, listen) in upstreams.items():
                results[key].append(wrk(listen, args.connections, args.duration, False)[0])
    shutil.rmtree(directory, ignore_errors=True)
    report(results)


def report(results: dict[str, list[float]]) -> None:
    median = {key: statistics.median(values) for key, values in results.items()}
    print(f"{'upstream':<24} {'req/s':>9} {'unix/tcp':>9} {'prefork/this':>13}")
    for key, rate in median.items():
        name, transport = key.rsplit(", ", 1)
        tcp = median[f"{name}, tcp"]
        prefork = median[f"prefork, {transport}"]
        print(f"{key:<24} {rate:>9.0f} {rate / tcp:>8.2f}x {prefork / rate:>12.2f}x")


if __name__ == "__main__":
    main()
