"""drain_delay: after TERM the server serves on while its health routes answer 503
'draining', then stops gracefully; a second TERM ends the drain."""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest

from tests.integration.conftest import Server, ServerFactory

DRAIN = 2.0


def client_loop(server: Server, stop: threading.Event, outcomes: list[int]) -> None:
    """GETs one after the other on fresh connections, until `stop` is set; an exception
    counts as 0."""
    while not stop.is_set():
        try:
            outcomes.append(server.get("/echo")[0])
        except OSError:
            outcomes.append(0)


def wait_exit(server: Server, timeout: float) -> int:
    return server.proc.wait(timeout)


@pytest.mark.parametrize("mode", [("--workers", "2"), ()], ids=["workers", "threaded"])
def test_drain_answers_draining_while_serving_then_stops(
    server_factory: ServerFactory, mode: tuple[str, ...]
) -> None:
    server = server_factory.start(
        "--app",
        "tests.apps.testapp:app",
        *mode,
        "--max-cron-threads",
        "0",
        "--drain-delay",
        str(DRAIN),
    )
    assert server.get("/web/health")[0] == 200
    stop, outcomes = threading.Event(), list[object]()
    loop = threading.Thread(target=client_loop, args=(server, stop, outcomes))
    loop.start()
    try:
        server.signal(signal.SIGTERM)
        server.wait_log(r"draining for 2 s")
        status, headers, body = server.get("/web/health")
        assert (status, json.loads(body)) == (503, {"status": "draining"})
        assert headers["Content-Type"] == "application/json"
        assert headers["Cache-Control"] == "no-store"
        assert server.get("/echo")[0] == 200  # still served
        assert server.proc.poll() is None
        assert wait_exit(server, DRAIN + 15) == 0
    finally:
        stop.set()
        loop.join(10)
    # Every request up to the last one served succeeded (after the stop: refused).
    last_ok = max(i for i, outcome in enumerate(outcomes) if outcome == 200)
    assert last_ok > 5 and set(outcomes[: last_ok + 1]) == {200}, outcomes
    assert "drain over" in server.log()


def test_realtime_health_drains_too(server_factory: ServerFactory) -> None:
    server = server_factory.start(
        "--app",
        "tests.apps.testapp:app",
        "--workers",
        "1",
        "--max-cron-threads",
        "0",
        "--drain-delay",
        "30",
    )
    realtime = Server(server.proc, server.log_path)
    realtime.port = server.realtime_port
    deadline = time.monotonic() + 15
    while realtime.get("/websocket/health")[0] != 200:  # the bus connects
        assert time.monotonic() < deadline
        time.sleep(0.1)
    server.signal(signal.SIGTERM)
    server.wait_log(r"draining for 30 s")
    status, _, body = realtime.get("/websocket/health")
    assert status == 503 and json.loads(body)["status"] == "draining"
    assert realtime.get("/longpolling/health")[:1] == (503,)
    server.signal(signal.SIGTERM)  # a second TERM: the graceful stop now, not in 30 s
    assert wait_exit(server, 20) == 0
    assert "ending the drain now" in server.log()


def test_without_drain_delay_term_stops_at_once(server_factory: ServerFactory) -> None:
    server = server_factory.start(
        "--app", "tests.apps.testapp:app", "--workers", "1", "--max-cron-threads", "0"
    )
    server.signal(signal.SIGTERM)
    assert wait_exit(server, 15) == 0
    assert "draining" not in server.log()
