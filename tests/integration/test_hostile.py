"""What a hostile or careless client can send the realtime process: JSON nested a million
deep, oversize bodies and messages, garbage in a loop. Each gets its answer (400, 413, 1009,
an ignored message), the process logs without a traceback and serves the next client. The
HTTP side's hostile inputs are in test_http.py, test_conformance.py and test_parser.py;
cookies in test_cookies.py; the dashboard's password in test_dashboard.py; clients that
never read in test_realtime.py and test_slow_readers.py."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

from tests.integration.conftest import Server, ServerFactory
from tests.integration.test_realtime import (
    channel,
    closed_with,
    nothing_more,
    publish,
    receive,
    start,
    subscribe,
    websocket,
)

DEEP = "[" * 1_000_000 + "]" * 1_000_000  # json.loads: RecursionError, not ValueError


def poll(server: Server, body: bytes) -> tuple[int, bytes]:
    url = f"http://127.0.0.1:{server.realtime_port}/longpolling/poll"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, body), timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read()


def test_hostile_messages_and_bodies_are_answered_and_the_process_serves_on(
    server_factory: ServerFactory,
) -> None:
    server = start(server_factory, "--workers", "1")
    name = channel()
    with websocket(server) as ws:
        ws.send(DEEP[: (1 << 20) - 2] + "]]")  # under the 1 MiB message limit, still deep
        ws.send('{"event_name": "subscribe", "data": {"channels": "' + "x" * 1000 + '"}}')
        for garbage in ("", "null", "{}", '{"event_name": 7}', b"\xff\xfe", "[" * 5000):
            ws.send(garbage)
        assert nothing_more(ws)  # ignored, the connection kept (Odoo's behaviour)
        subscribe(ws, [name])
        assert nothing_more(ws)
        assert publish(server, name, {"n": 1}) == 200
        assert [m["message"] for m in receive(ws, 1)] == [{"n": 1}]
    with websocket(server) as ws:
        ws.send("x" * ((1 << 20) + 1))
        assert closed_with(ws) == 1009
    deep_json = (
        json.dumps({"params": {"channels": [name], "last": 0}})[:-1]
        + ', "x": '
        + "[" * 200_000
        + "]" * 200_000
        + "}"
    )
    assert poll(server, deep_json.encode())[0] == 400
    assert poll(server, b"[" * ((1 << 20) + 10))[0] == 413
    assert poll(server, b"\xff\xfe not json")[0] == 400
    status, body = poll(
        server,
        json.dumps({"params": {"channels": [name], "last": 0, "options": {"peek": True}}}).encode(),
    )
    assert status == 200 and json.loads(body)["result"]["notifications"]  # still serving
    for _ in range(40):  # uvicorn warns once per garbage request: once a minute now
        with socket.create_connection(("127.0.0.1", server.realtime_port), timeout=10) as sock:
            sock.sendall(b"\x16\x03\x01 not HTTP\r\n\r\n")
            sock.recv(1024)
    log = server.log()
    assert log.count("Invalid HTTP request received.") == 1
    assert "Traceback" not in log and "ignored a client message: JSON nested too deeply" in log
