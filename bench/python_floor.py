"""The least a Python HTTP worker can do per request, as a floor for prefork's figures.

N forked processes share one listening socket (epoll, EPOLLEXCLUSIVE, TCP_DEFER_ACCEPT, as
prefork's workers); each serves keep-alive connections one request at a time, and for each
request does only what any Python WSGI server must:
- `--level wsgi`: find the end of the head, split its lines, build a PEP 3333 environ (the
  same keys prefork's has, without validating anything), call the application with a
  start_response that joins the headers, send head and body in one send();
- `--level canned`: find the end of the head and send a prepared response, with no
  application at all (the issue's probe: "no full WSGI environ").

It checks nothing (no limits, no framing of bodies, no request bodies, no errors): it is not
a server, it is what a Python server cannot go below. bench/python_floor_compare.py runs it
next to prefork and granian.

Usage: python bench/python_floor.py PORT WORKERS [--level wsgi|canned]
"""

from __future__ import annotations

import argparse
import io
import os
import select
import socket
import sys
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from forked import run_forked
from hello import BODY, HEADERS, app

CANNED = (
    b"HTTP/1.1 200 OK\r\n"
    + b"".join(f"{name}: {value}\r\n".encode() for name, value in HEADERS)
    + b"\r\n"
    + BODY
)
BASE = {
    "SERVER_NAME": "127.0.0.1",
    "SERVER_PORT": "0",
    "SCRIPT_NAME": "",
    "wsgi.version": (1, 0),
    "wsgi.url_scheme": "http",
    "wsgi.errors": sys.stderr,
    "wsgi.multithread": False,
    "wsgi.multiprocess": True,
    "wsgi.run_once": False,
    "wsgi.input": io.BytesIO(),
    "CONTENT_LENGTH": "",
}


def respond_wsgi(head: bytes, peer: tuple[str, int]) -> bytes:
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ")
    path, _, query = target.partition("?")
    environ = BASE.copy()
    environ.update(
        REQUEST_METHOD=method,
        PATH_INFO=path,
        QUERY_STRING=query,
        SERVER_PROTOCOL=version,
        REMOTE_ADDR=peer[0],
        REMOTE_PORT=str(peer[1]),
    )
    for line in lines[1:]:
        name, _, value = line.partition(":")
        environ["HTTP_" + name.upper().replace("-", "_")] = value.strip()
    out: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        out.append(f"HTTP/1.1 {status}\r\n")
        out.extend(f"{name}: {value}\r\n" for name, value in headers)

    body = b"".join(app(environ, start_response))
    return "".join(out).encode("latin-1") + b"\r\n" + body


def respond_canned(head: bytes, peer: tuple[str, int]) -> bytes:
    return CANNED


def serve(listener: socket.socket, respond: Callable[[bytes, tuple[str, int]], bytes]) -> None:
    poller = select.epoll()
    poller.register(listener.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)
    conns: dict[int, tuple[socket.socket, tuple[str, int], bytearray]] = {}
    while True:
        for fd, _ in poller.poll():
            if fd == listener.fileno():
                try:
                    sock, peer = listener.accept()
                except BlockingIOError:
                    continue
                sock.setblocking(False)
                conns[sock.fileno()] = (sock, peer, bytearray())
                poller.register(sock.fileno(), select.EPOLLIN)
                fd = sock.fileno()
            sock, peer, buf = conns[fd]
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                poller.unregister(fd)
                del conns[fd]
                sock.close()
                continue
            buf += data
            while (end := buf.find(b"\r\n\r\n")) >= 0:
                head = bytes(buf[:end])
                del buf[: end + 4]
                sock.send(respond(head, peer))  # small: fits the socket buffer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("workers", type=int)
    parser.add_argument("--level", choices=["wsgi", "canned"], default="wsgi")
    args = parser.parse_args()
    listener = socket.create_server(("127.0.0.1", args.port), backlog=2048)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
    listener.setblocking(False)
    respond = respond_wsgi if args.level == "wsgi" else respond_canned
    run_forked(args.workers, lambda: serve(listener, respond))


if __name__ == "__main__":
    main()
