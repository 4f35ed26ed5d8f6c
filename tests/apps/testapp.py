"""WSGI applications the tests serve through real prefork processes."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

StartResponse = Callable[..., Any]
CLOSE_MARKER = os.environ.get("TESTAPP_CLOSE_MARKER", "")


def echo(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Everything the server made of the request, as JSON."""
    body = environ["wsgi.input"].read()
    report = {
        "method": environ["REQUEST_METHOD"],
        "raw": environ["RAW_URI"],
        "path": environ["PATH_INFO"],
        "query": environ["QUERY_STRING"],
        "protocol": environ["SERVER_PROTOCOL"],
        "headers": [[n, v] for n, v in environ["prefork.headers"]],
        "environ_headers": {
            k: v for k, v in environ.items() if k.startswith("HTTP_") or k.startswith("CONTENT_")
        },
        "remote_addr": environ["REMOTE_ADDR"],
        "scheme": environ["wsgi.url_scheme"],
        "body_b64": base64.b64encode(body).decode(),
        "body_len": len(body),
        "pid": os.getpid(),
    }
    payload = json.dumps(report).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
    )
    return [payload]


class _Tracked:
    """An iterable response whose close() leaves a trace on disk."""

    def __init__(self, chunks: Iterator[bytes], tag: str) -> None:
        self._chunks = chunks
        self._tag = tag

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        if CLOSE_MARKER:
            with open(CLOSE_MARKER, "a", encoding="utf-8") as handle:
                handle.write(self._tag + "\n")


def _stream(count: int, size: int, delay: float) -> Iterator[bytes]:
    for index in range(count):
        if delay:
            time.sleep(delay)
        yield (b"%06d:" % index) + b"x" * (size - 7)


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    query = dict(p.split("=", 1) for p in environ["QUERY_STRING"].split("&") if "=" in p)
    if path == "/stream":
        count, size = int(query.get("n", "5")), int(query.get("size", "100"))
        delay = float(query.get("delay", "0"))
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return _Tracked(_stream(count, size, delay), f"stream {query.get('tag', '')}")
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written-")
        return [b"returned"]
    if path == "/error":
        raise RuntimeError("boom from the test app")
    if path == "/error-after-start":

        def broken() -> Iterator[bytes]:
            yield b"partial"
            raise RuntimeError("boom while streaming")

        start_response("200 OK", [("Content-Type", "text/plain")])
        return broken()
    if path == "/sleep":
        started = time.time()
        time.sleep(float(query.get("s", "1")))
        if query.get("report") == "1":
            return _json(start_response, {"pid": os.getpid(), "start": started, "end": time.time()})
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"slept"]
    if path == "/empty":
        start_response("204 No Content", [])
        return []
    if path == "/read-part":
        data = environ["wsgi.input"].read(int(query.get("n", "3")))
        rest = environ["wsgi.input"].read()
        out = json.dumps({"part": data.decode("latin-1"), "rest": rest.decode("latin-1")})
        start_response("200 OK", [("Content-Type", "application/json")])
        return [out.encode()]
    if path == "/mem":
        return _memory(query, start_response)
    if path == "/burn":
        deadline = time.process_time() + float(query.get("s", "1"))
        while time.process_time() < deadline:
            pass
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"burnt"]
    if path == "/sum":  # a C loop that never returns to the interpreter (no signal handler)
        total = sum(range(int(query.get("n", "1000"))))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(total).encode()]
    if path == "/crash":
        os._exit(7)
    return echo(environ, start_response)


_KEPT: list[bytes] = []


def _json(start_response: StartResponse, data: object) -> Iterable[bytes]:
    body = json.dumps(data).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def _memory(query: dict[str, str], start_response: StartResponse) -> Iterable[bytes]:
    """Allocate (and touch) `mb` MiB; with keep=1 the memory outlives the request."""
    block = b"\x01" * (int(query.get("mb", "1")) << 20)
    if query.get("keep") == "1":
        _KEPT.append(block)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"allocated %d MiB" % (len(block) >> 20)]
