"""Clients that read their responses slowly, or not at all, cost a worker memory, never its
time: the worker sends what the socket takes, keeps the rest (bounded) and serves others
while its event loop sends the rest as the client reads."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.integration.conftest import PREFORK, ROOT, Server, ServerFactory
from tests.unit.test_slow_readers import MiB

APP = ("--app", "tests.apps.testapp:app", "--max-cron-threads", "0")
CHUNK = MiB  # /stream's chunk size in these tests


def _stalled_request(server: Server, path: str) -> socket.socket:
    """A client that asks for `path` and reads nothing (a small receive buffer, so the
    kernel takes little of the response for it)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.connect((server.host, server.port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    return sock


def _read_response(
    sock: socket.socket, timeout: float = 30, data: bytes = b""
) -> tuple[bytes, bytes]:
    """(head, body) of a chunked or Content-Length response, read to its end; `data`: what
    was read of it already."""
    head, body, _ = _read_responses(sock, timeout, data)
    return head, body


def _read_responses(
    sock: socket.socket, timeout: float = 30, data: bytes = b""
) -> tuple[bytes, bytes, bytes]:
    """(head, body, what was read past its end)."""
    sock.settimeout(timeout)
    while b"\r\n\r\n" not in data:
        data += _recv(sock)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = re.search(rb"Content-Length: (\d+)", head)
    if length:
        size = int(length.group(1))
        while len(rest) < size:
            rest += _recv(sock)
        return head, rest[:size], rest[size:]
    body = bytearray()
    while True:  # chunked
        while b"\r\n" not in rest:
            rest += _recv(sock)
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        while len(rest) < size + 2:
            rest += _recv(sock)
        body += rest[:size]
        rest = rest[size + 2 :]
        if size == 0:
            return head, bytes(body), rest


def _recv(sock: socket.socket) -> bytes:
    chunk = sock.recv(1 << 20)
    assert chunk, "the server closed the connection"
    return chunk


def _expected_stream(count: int, size: int) -> bytes:
    return b"".join((b"%06d:" % index) + b"x" * (size - 7) for index in range(count))


def _state(server: Server, tmp_path: Path) -> dict:  # type: ignore[type-arg]
    out = subprocess.run(
        [PREFORK, "status", "--json", "--data-dir", str(tmp_path / "data"), "-p", "0"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
        check=True,
    ).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def _http_workers(state: dict) -> list[dict]:  # type: ignore[type-arg]
    return [row for row in state["processes"] if row["role"].startswith("http worker")]


def test_a_client_that_reads_nothing_does_not_hold_the_only_worker(
    server_factory: ServerFactory,
) -> None:
    server = server_factory.start(*APP, "--workers", "1", "--http-send-timeout", "120")
    stalled = _stalled_request(server, f"/stream?n=48&size={CHUNK}")
    time.sleep(0.5)  # the worker has begun the 48 MiB response
    for _ in range(3):  # the one worker serves others meanwhile
        status, _, body = server.get("/echo")
        assert status == 200 and json.loads(body)["path"] == "/echo"
    _, body = _read_response(stalled)  # and the stalled client still gets all of it
    assert body == _expected_stream(48, CHUNK)
    stalled.close()


def test_pipelined_requests_wait_for_the_slow_response_before_them(
    server_factory: ServerFactory,
) -> None:
    server = server_factory.start(*APP, "--workers", "1")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.connect((server.host, server.port))
    sock.sendall(
        f"GET /stream?n=16&size={CHUNK} HTTP/1.1\r\nHost: t\r\n\r\n"
        "GET /echo?after=1 HTTP/1.1\r\nHost: t\r\n\r\n".encode()
    )
    time.sleep(0.5)
    assert server.get("/echo")[0] == 200  # served while the first response waits
    _, first, more = _read_responses(sock)
    _, second = _read_response(sock, data=more)
    assert first == _expected_stream(16, CHUNK)
    assert json.loads(second)["query"] == "after=1"
    sock.close()


def test_memory_kept_for_slow_readers_is_bounded_and_shown(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """A streamed body is drawn no further than http_send_buffer ahead of its client; the
    status shows what each worker keeps, for how many clients."""
    server = server_factory.start(
        *APP, "--workers", "1", "--http-send-buffer", "2M", "--http-send-timeout", "120"
    )
    stalled = [_stalled_request(server, f"/stream?n=64&size={CHUNK}") for _ in range(3)]
    time.sleep(1.5)  # the master publishes the state every second
    (worker,) = _http_workers(_state(server, tmp_path))
    assert worker["sending_clients"] == 3
    # Each: at most its 2 MiB share plus the chunk that crossed it (not 64 MiB).
    assert 0 < worker["sending_bytes"] <= 3 * (2 * MiB + CHUNK + 64)
    status = subprocess.run(
        [PREFORK, "status", "--data-dir", str(tmp_path / "data"), "-p", "0"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
        check=True,
    ).stdout
    assert "to 3 slow reader(s)" in status
    for sock in stalled:
        sock.close()


def test_a_client_that_stops_reading_is_dropped_after_the_send_timeout(
    server_factory: ServerFactory,
) -> None:
    server = server_factory.start(*APP, "--workers", "1", "--http-send-timeout", "1")
    stalled = _stalled_request(server, f"/stream?n=64&size={CHUNK}&tag=stalled")
    server.wait_log(r"dropped: read nothing of its response for 1s", timeout=15)
    server.wait_log(
        r'"GET /stream\?n=64&size=1048576&tag=stalled HTTP/1.1" 200 \d+', timeout=5
    )  # logged, with what was sent
    stalled.close()
    assert server.get("/echo")[0] == 200


def test_the_real_time_limit_counts_the_application_not_a_slow_reader(
    server_factory: ServerFactory,
) -> None:
    server = server_factory.start(
        *APP, "--workers", "1", "--limit-time-real", "2", "--http-send-timeout", "60"
    )
    stalled = _stalled_request(server, f"/stream?n=32&size={CHUNK}")
    time.sleep(4)  # twice the limit, unread
    _, body = _read_response(stalled)
    assert body == _expected_stream(32, CHUNK)
    assert "real-time" not in server.log()
    stalled.close()


def test_a_graceful_stop_lets_slow_readers_finish(server_factory: ServerFactory) -> None:
    server = server_factory.start(*APP, "--workers", "1", "--http-send-timeout", "60")
    stalled = _stalled_request(server, f"/stream?n=24&size={CHUNK}")
    time.sleep(0.5)
    server.signal(signal.SIGTERM)
    time.sleep(0.5)
    _, body = _read_response(stalled)
    assert body == _expected_stream(24, CHUNK)
    assert server.proc.wait(30) == 0
    stalled.close()


def test_many_slow_readers_of_a_large_body_leave_the_workers_free(
    server_factory: ServerFactory,
) -> None:
    """Eight clients that never read a large response, on two workers: others are served
    at once (every request of a loop completes while they wait)."""
    server = server_factory.start(*APP, "--workers", "2", "--http-send-timeout", "120")
    stalled = [_stalled_request(server, f"/stream?n=8&size={CHUNK}") for _ in range(8)]
    time.sleep(0.5)
    served = [server.get("/echo")[0] for _ in range(50)]
    assert served == [200] * 50
    for sock in stalled:
        _, body = _read_response(sock)
        assert body == _expected_stream(8, CHUNK)
        sock.close()


# -- the connection's side, on a socket pair ------------------------------------------------
