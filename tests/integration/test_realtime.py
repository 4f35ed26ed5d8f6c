"""The realtime process and the bus: real server, real PostgreSQL, real websocket clients."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from prefork.bus.store import write
from tests.integration.conftest import MODES, PREFORK, Server, ServerFactory

APP = ("--app", "tests.apps.busapp:app", "--max-cron-threads", "0")
HOOKS = (
    "--bus-auth",
    "tests.apps.busapp:authenticate",
    "--bus-channels",
    "tests.apps.busapp:channels",
)


def channel() -> str:
    return f"test.{uuid.uuid4().hex[:12]}"


def eventually(predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except (OSError, http.client.HTTPException, psutil.Error):
            pass
        time.sleep(0.05)
    raise AssertionError("condition never became true")


def publish(server: Server, name: str, message: Any, **query: str) -> int:
    conn = server.http(timeout=15)
    try:
        params = "&".join(f"{k}={v}" for k, v in {"channel": name, **query}.items())
        conn.request("POST", f"/publish?{params}", body=json.dumps(message))
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@contextmanager
def websocket(
    server: Server, path: str = "/websocket", *, retry_for: float = 0.0, **headers: str
) -> Iterator[ClientConnection]:
    url = f"ws://127.0.0.1:{server.realtime_port}{path}"
    deadline = time.monotonic() + retry_for
    user_agent = headers.pop("User-Agent", None)  # none by default: not a browser
    while True:
        try:
            client = connect(
                url, open_timeout=10, additional_headers=headers, user_agent_header=user_agent
            )
            break
        except (OSError, InvalidStatus):
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)
    with client as ws:
        yield ws


def subscribe(ws: ClientConnection, channels: list[Any], last: int = 0) -> None:
    ws.send(json.dumps({"event_name": "subscribe", "data": {"channels": channels, "last": last}}))


def receive(ws: ClientConnection, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    received: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(received) < count:
        received.extend(json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic()))))
    return received


def nothing_more(ws: ClientConnection, wait: float = 0.5) -> bool:
    try:
        ws.recv(timeout=wait)
    except TimeoutError:
        return True
    return False


def closed_with(ws: ClientConnection, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    with pytest.raises(ConnectionClosed) as info:
        while time.monotonic() < deadline:
            ws.recv(timeout=max(0.01, deadline - time.monotonic()))
    assert info.value.rcvd is not None, "closed without a close frame"
    return info.value.rcvd.code


def realtime_pid(server: Server) -> int:
    pid = running_realtime_pid(server)
    assert pid, "no realtime process"
    return pid


def running_realtime_pid(server: Server) -> int:
    """The realtime process's pid; 0 while there is none (a replacement not yet forked, or
    forked but not yet titled "prefork: realtime")."""
    for child in psutil.Process(server.proc.pid).children():
        if "prefork: realtime" in " ".join(child.cmdline()):
            return child.pid
    return 0


def health(server: Server) -> dict[str, Any]:
    url = f"http://127.0.0.1:{server.realtime_port}/websocket/health"
    try:
        body = urllib.request.urlopen(url, timeout=5).read()
    except urllib.error.HTTPError as unhealthy:  # 503 while the bus is disconnected
        body = unhealthy.read()
    return json.loads(body)  # type: ignore[no-any-return]


def start(server_factory: ServerFactory, *args: str, **kwargs: Any) -> Server:
    """A server whose realtime process is up and connected to the bus."""
    server: Server = server_factory.start(*APP, *args, **kwargs)
    eventually(lambda: health(server)["bus_connected"])
    return server


@pytest.fixture
def bus_server(server_factory: ServerFactory) -> Server:
    return start(server_factory, "--workers", "2")


@pytest.fixture(params=list(MODES))
def any_mode(request: pytest.FixtureRequest, server_factory: ServerFactory) -> Server:
    """Threaded mode serves the realtime endpoints on http_port itself."""
    return start(server_factory, *MODES[request.param])


def test_threaded_mode_serves_websockets_on_the_http_port(server_factory: ServerFactory) -> None:
    server = start(server_factory)
    assert server.realtime_port == server.port
    assert health(server)["status"] == "pass"
    name = channel()
    with websocket(server) as ws:
        subscribe(ws, [name])
        assert publish(server, name, {"n": 1}) == 200
        assert receive(ws, 1)[0]["message"] == {"n": 1}
        server.signal(signal.SIGTERM)
        assert closed_with(ws) == 1001
    assert server.proc.wait(15) == 0


def test_processes_and_health(bus_server: Server) -> None:
    pid = realtime_pid(bus_server)
    assert psutil.Process(pid).cmdline()[0] == f"prefork: realtime :{bus_server.realtime_port}"
    assert health(bus_server) == {"status": "pass", "bus_connected": True, "websockets": 0}


def test_publish_in_a_request_is_delivered_on_commit_only(any_mode: Server) -> None:
    name = channel()
    with websocket(any_mode) as ws:
        subscribe(ws, [name])
        assert publish(any_mode, name, {"n": 1}, fail="1") == 500  # rolled back
        assert publish(any_mode, name, {"n": 2}) == 200
        first = receive(ws, 1)
        assert [m["message"] for m in first] == [{"n": 2}]
        assert nothing_more(ws)


def test_a_message_over_notify_payload_limit_is_delivered(any_mode: Server) -> None:
    name, text = channel(), "x" * 9000
    with websocket(any_mode, "/web/websocket") as ws:
        subscribe(ws, [name])
        assert publish(any_mode, name, {"text": text}) == 200
        assert receive(ws, 1)[0]["message"] == {"text": text}


def test_out_of_order_commits_are_each_delivered_once(
    bus_server: Server, database_uri: str
) -> None:
    name = channel()
    with (
        websocket(bus_server) as ws,
        psycopg.connect(database_uri) as first,
        psycopg.connect(database_uri) as second,
    ):
        subscribe(ws, [name])
        time.sleep(0.3)
        write(first, name, {"order": "written first, committed last"})
        write(second, name, {"order": "written second, committed first"})
        second.commit()
        early = receive(ws, 1)
        first.commit()
        late = receive(ws, 1)
        assert [m["message"]["order"] for m in early + late] == [
            "written second, committed first",
            "written first, committed last",
        ]
        assert late[0]["id"] > early[0]["id"]
        assert nothing_more(ws)
        # A client that saw only the early one catches up with the late one, once.
        with websocket(bus_server) as again:
            subscribe(again, [name], last=early[0]["id"])
            assert receive(again, 1) == late
            assert nothing_more(again)


def test_killed_realtime_process_is_replaced_and_clients_miss_nothing(bus_server: Server) -> None:
    name = channel()
    with websocket(bus_server) as ws:
        subscribe(ws, [name])
        assert publish(bus_server, name, {"n": 1}) == 200
        seen = receive(ws, 1)
        old = realtime_pid(bus_server)
        os.kill(old, signal.SIGKILL)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
    for n in (2, 3):  # published while no realtime process runs
        assert publish(bus_server, name, {"n": n}) == 200
    eventually(lambda: running_realtime_pid(bus_server) not in (0, old))
    with websocket(bus_server, retry_for=15) as ws:
        subscribe(ws, [name], last=seen[-1]["id"])
        assert [m["message"]["n"] for m in receive(ws, 2)] == [2, 3]
        assert nothing_more(ws)


def test_channels_are_filtered_by_the_application_hook(server_factory: ServerFactory) -> None:
    server = start(server_factory, *HOOKS, "--workers", "1")
    public, private = channel(), "private." + channel()
    with (
        websocket(server, Cookie="session_id=visitor") as visitor,
        websocket(server, Cookie="session_id=admin") as admin,
    ):
        subscribe(visitor, [public, private])
        subscribe(admin, [private])
        time.sleep(0.3)
        assert publish(server, private, {"secret": True}) == 200
        assert publish(server, public, {"secret": False}) == 200
        assert [m["message"] for m in receive(visitor, 1)] == [{"secret": False}]
        assert [m["message"] for m in receive(admin, 1)] == [{"secret": True}]
        assert nothing_more(visitor)


def test_odoo_client_messages_work_unchanged(bus_server: Server) -> None:
    """Odoo 17's bus worker sends exactly this (string channels, ?version=)."""
    name = channel()
    with websocket(bus_server, "/websocket?version=17.0-1") as ws:
        ws.send('{"event_name":"subscribe","data":{"channels":["' + name + '"],"last":0}}')
        time.sleep(0.3)
        assert (
            publish(bus_server, name, {"type": "mail.record/insert", "payload": {"id": 1}}) == 200
        )
        (item,) = receive(ws, 1)
        assert set(item) == {"id", "message"}
        assert item["message"] == {"type": "mail.record/insert", "payload": {"id": 1}}


def test_record_channels_need_a_session_and_the_hooks_consent(
    server_factory: ServerFactory, database_uri: str
) -> None:
    """Odoo takes only string channels from clients. Here a record channel is refused to
    anonymous clients even when asked for as a string that spells it, even when the hook
    would allow it, and in their catch-up too; a signed-in client gets it when the hook
    consents; without a hook nobody gets it."""
    record = ["prefork_test", "res.partner", uuid.uuid4().int % 10**6]
    spelled = json.dumps(record, separators=(",", ":"))

    def send(n: int) -> None:
        with psycopg.connect(database_uri) as conn:
            write(conn, tuple(record), {"n": n})

    server = start(server_factory, *HOOKS, "--workers", "1")
    send(1)  # waiting in the history: a client subscribing with last 0 would catch it up
    with (
        websocket(server) as anonymous,
        websocket(server) as spelling,
        websocket(server, Cookie="session_id=visitor") as visitor,
        websocket(server, Cookie="session_id=partner") as partner,
    ):
        subscribe(anonymous, [record])
        subscribe(spelling, [spelled])
        subscribe(visitor, [record])
        subscribe(partner, [record])
        assert [m["message"] for m in receive(partner, 1)] == [{"n": 1}]
        send(2)
        assert [m["message"] for m in receive(partner, 1)] == [{"n": 2}]
        for refused in (anonymous, spelling, visitor):
            assert nothing_more(refused)
    plain = start(server_factory, "--workers", "1")
    with websocket(plain, Cookie="session_id=whatever") as ws:
        subscribe(ws, [record])
        send(3)
        assert nothing_more(ws, 1.0)


def test_everyone_gets_the_broadcast_channel(
    server_factory: ServerFactory, fresh_database: str
) -> None:
    """Its own database: other tests' clients would catch up with this broadcast."""
    server = start(server_factory, "--workers", "1", "--db-uri", fresh_database)
    with websocket(server) as ws:
        subscribe(ws, [channel()])
        time.sleep(0.3)
        assert publish(server, "broadcast", {"to": "all"}) == 200
        assert [m["message"] for m in receive(ws, 1)] == [{"to": "all"}]


def test_a_stale_session_cookie_is_served_as_anonymous(server_factory: ServerFactory) -> None:
    """Odoo serves an unknown session id as a fresh public session; a client that
    reconnects as Odoo's worker does (back-off reset on every open) would otherwise loop."""
    from prefork.sessions import signing
    from tests.integration.bus_client import OdooLikeWorker

    server = start(server_factory, "--workers", "1", "--session-secret", "s3cret")
    unknown = signing.sign("u" * 43, b"s3cret")  # well signed, in no store: expired
    for cookie in (f"session_id={unknown}", "session_id=forged.value", "session_id=\u00e9"):
        name = channel()
        url = f"ws://127.0.0.1:{server.realtime_port}/websocket"
        with OdooLikeWorker(url, [name], cookie=cookie) as worker:
            worker.wait_for(lambda: worker.opened)
            time.sleep(0.5)  # subscribed
            assert publish(server, name, {"n": 1}) == 200
            worker.wait_for(lambda: worker.received)
            time.sleep(2)  # a reconnect loop would show several opens by now
            assert (worker.opened, worker.closes) == (1, []), cookie
            assert [m["message"] for m in worker.received] == [{"n": 1}]
    url = f"http://127.0.0.1:{server.realtime_port}/longpolling/poll"
    name = channel()
    assert publish(server, name, {"n": 2}) == 200
    reply = json.loads(
        urllib.request.urlopen(
            urllib.request.Request(
                url,
                json.dumps({"params": {"channels": [name], "last": 0}}).encode(),
                {"Cookie": f"session_id={unknown}"},
            ),
            timeout=60,
        ).read()
    )
    assert [m["message"] for m in reply["result"]] == [{"n": 2}]


def test_a_session_that_expires_while_connected_closes_with_4001(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """And the Odoo-like worker, which reconnects after 4001, is then served anonymously:
    one reconnection, not a loop."""
    from tests.integration.bus_client import OdooLikeWorker

    expired = tmp_path / "expired"
    server = start(server_factory, *HOOKS, "--workers", "1", env={"BUS_EXPIRED_FILE": str(expired)})
    url = f"ws://127.0.0.1:{server.realtime_port}/websocket"
    with OdooLikeWorker(url, [channel()], cookie="session_id=s1") as worker:
        worker.wait_for(lambda: worker.opened)
        expired.write_text("s1\n")
        with websocket(server, Cookie="session_id=s1") as again:  # expired at connect
            subscribe(again, [channel()])
            assert nothing_more(again)
        worker.subscribe()  # the session is checked on every message (and every minute)
        worker.wait_for(lambda: worker.closes)
        worker.wait_for(lambda: worker.opened == 2)
        time.sleep(2)
        assert (worker.opened, worker.closes) == (2, [(4001, "")])


def test_close_codes(server_factory: ServerFactory, tmp_path: Path) -> None:
    expired = tmp_path / "expired"
    server = start(server_factory, *HOOKS, "--workers", "1", env={"BUS_EXPIRED_FILE": str(expired)})
    with websocket(server) as ws:
        ws.send("x" * ((1 << 20) + 1))
        assert closed_with(ws) == 1009
    with websocket(server) as ws:
        for _ in range(15):
            subscribe(ws, [channel()])
        assert closed_with(ws) == 1013
    with websocket(server, Cookie="session_id=s1") as ws:
        subscribe(ws, [channel()])
        expired.write_text("s1\n")
        subscribe(ws, [channel()])
        assert closed_with(ws) == 4001
    with pytest.raises(InvalidStatus) as refused, websocket(server, Origin="http://evil.example"):
        pass
    assert refused.value.response.status_code == 403
    with websocket(server, Origin="http://127.0.0.1:8069") as ws:  # same host, other port
        subscribe(ws, [channel()])
        assert nothing_more(ws)
    with websocket(server) as ws:
        server.signal(signal.SIGTERM)
        assert closed_with(ws) == 1001


MALFORMED = [
    "not json",
    "",
    '{"data": {}}',
    "[1, 2]",
    '{"event_name": "no_such_event"}',
    '{"event_name": "subscribe", "data": "x"}',
    '{"event_name": "subscribe", "data": ["a"]}',
    '{"event_name": "subscribe", "data": {"channels": 5}}',
    '{"event_name": "subscribe", "data": {"channels": ["a"], "last": "abc"}}',
    '{"event_name": "subscribe", "data": {"channels": [{"a": 1}], "last": 0}}',
    "[" * 100_000 + "]" * 100_000,
]


def test_malformed_messages_are_logged_and_ignored(server_factory: ServerFactory) -> None:
    """As Odoo does: the connection stays, subscribed as it was, and serves the next valid
    subscribe; the realtime process serves everyone meanwhile; one line in the log."""
    server = start(server_factory, "--workers", "1", "--websocket-rate-limit-burst", "50")
    pid, name, other = realtime_pid(server), channel(), channel()
    with websocket(server) as ws, websocket(server) as bystander:
        subscribe(ws, [name])
        subscribe(bystander, [other])
        for message in MALFORMED:
            ws.send(message)
        ws.send(b"\xff\xfe")  # binary, not UTF-8
        assert nothing_more(ws)
        assert publish(server, name, {"n": 1}) == 200
        assert publish(server, other, {"n": 2}) == 200
        assert [m["message"] for m in receive(ws, 1)] == [{"n": 1}]
        assert [m["message"] for m in receive(bystander, 1)] == [{"n": 2}]
        renamed = channel()
        subscribe(ws, [renamed])
        time.sleep(0.3)
        assert publish(server, renamed, {"n": 3}) == 200
        assert [m["message"] for m in receive(ws, 1)] == [{"n": 3}]
    assert realtime_pid(server) == pid
    log = server.log()
    assert "Traceback" not in log
    assert log.count("websocket: ignored a client message: not JSON") == 1, log


def test_a_failing_hook_is_logged_and_the_connection_stays(server_factory: ServerFactory) -> None:
    server = start(server_factory, *HOOKS, "--workers", "1")
    with websocket(server, Cookie="session_id=crash") as ws:
        subscribe(ws, [channel()])
        assert nothing_more(ws)
        ws.ping().wait(10)  # still open and served
    assert "a client message failed in a bus hook" in server.log()
    assert "RuntimeError: a bug in the bus_channels hook" in server.log()


def test_the_rate_limit_is_odoos(server_factory: ServerFactory) -> None:
    """3 messages at once pass; a 4th within 3 x 0.5 s of the first closes with 1013."""
    server = start(
        server_factory,
        "--workers",
        "1",
        "--websocket-rate-limit-burst",
        "3",
        "--websocket-rate-limit-delay",
        "0.5",
    )
    with websocket(server) as ws:
        for _ in range(3):
            subscribe(ws, [channel()])
        assert nothing_more(ws, 0.2)
        subscribe(ws, [channel()])
        assert closed_with(ws) == 1013


def test_an_outdated_worker_is_told_so(server_factory: ServerFactory) -> None:
    """Odoo 17+: a browser whose worker is not the current version is closed with 1000 and
    OUTDATED_VERSION (its worker then stops); devices (not a browser's User-Agent) are
    not asked."""
    server = start(server_factory, "--workers", "1", "--websocket-worker-version", "17.0-1")
    browser = {"User-Agent": "Mozilla/5.0"}
    with websocket(server, "/websocket?version=16.0-3", retry_for=0, **browser) as ws:
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
        assert info.value.rcvd is not None
        assert (info.value.rcvd.code, info.value.rcvd.reason) == (1000, "OUTDATED_VERSION")
    with websocket(server, "/websocket", retry_for=0, **browser) as ws:
        assert closed_with(ws) == 1000
    device = {"User-Agent": "Python/3.11 websockets/14"}
    for path, headers in (
        ("/websocket?version=17.0-1", browser),
        ("/websocket", {}),
        ("/websocket", device),
    ):
        with websocket(server, path, retry_for=0, **headers) as ws:
            subscribe(ws, [channel()])
            assert nothing_more(ws)


def test_a_wrong_websocket_version_gets_426_naming_13(bus_server: Server) -> None:
    sock = socket.create_connection(("127.0.0.1", bus_server.realtime_port), timeout=10)
    sock.sendall(
        b"GET /websocket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 8\r\n\r\n"
    )
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    sock.close()
    head = received.partition(b"\r\n\r\n")[0].decode().lower()
    assert head.startswith("http/1.1 426")
    assert "\r\nsec-websocket-version: 13" in head


def test_connection_lifetime_closes_with_4002(server_factory: ServerFactory) -> None:
    server = start(server_factory, "--workers", "1", "--websocket-lifetime", "1")
    with websocket(server) as ws:
        started = time.monotonic()
        assert closed_with(ws) == 4002
        assert 0.85 <= time.monotonic() - started <= 3


def test_long_polling(any_mode: Server) -> None:
    name = channel()
    url = f"http://127.0.0.1:{any_mode.realtime_port}/longpolling/poll"

    def poll(last: int) -> list[dict[str, Any]]:
        body = json.dumps(
            {
                "jsonrpc": "2.0",
                "method": "call",
                "id": 9,
                "params": {"channels": [name], "last": last},
            }
        ).encode()
        request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
        reply = json.loads(urllib.request.urlopen(request, timeout=60).read())
        assert reply["jsonrpc"] == "2.0" and reply["id"] == 9
        return reply["result"]  # type: ignore[no-any-return]

    assert publish(any_mode, name, {"n": 1}) == 200
    first = eventually(lambda: poll(0))  # answered at once: a message is waiting
    assert [(m["channel"], m["message"]) for m in first] == [(name, {"n": 1})]
    results: list[list[dict[str, Any]]] = []
    waiter = threading.Thread(target=lambda: results.append(poll(first[-1]["id"])))
    waiter.start()
    time.sleep(1.0)
    assert waiter.is_alive(), "answered with nothing new instead of waiting"
    assert publish(any_mode, name, {"n": 2}) == 200
    waiter.join(10)
    assert [m["message"] for m in results[0]] == [{"n": 2}]


def rpc(server: Server, path: str, params: dict[str, Any], **headers: str) -> Any:
    url = f"http://127.0.0.1:{server.realtime_port}{path}"
    body = json.dumps({"jsonrpc": "2.0", "method": "call", "id": 3, "params": params})
    request = urllib.request.Request(
        url, body.encode(), {"Content-Type": "application/json", **headers}
    )
    reply = json.loads(urllib.request.urlopen(request, timeout=60).read())
    assert reply["jsonrpc"] == "2.0" and reply["id"] == 3
    return reply


def test_long_polling_as_odoo_15s_controller(
    server_factory: ServerFactory, fresh_database: str
) -> None:
    """broadcast added, options.peek answered at once, record channels refused to
    anonymous clients, /longpolling/health and /longpolling/im_status answered."""
    server = start(server_factory, *HOOKS, "--workers", "1", "--db-uri", fresh_database)
    name, record = channel(), ["db", "res.partner", 7]
    for target, message in ((name, {"n": 1}), ("broadcast", {"to": "all"})):
        assert publish(server, target, message) == 200
    with psycopg.connect(fresh_database) as conn:
        write(conn, tuple(record), {"secret": True})
    expected = [(name, {"n": 1}), ("broadcast", {"to": "all"})]

    def poll(**headers: str) -> Any:
        return rpc(server, "/longpolling/poll", {"channels": [name, record], "last": 0}, **headers)[
            "result"
        ]

    both = eventually(lambda: (found := poll()) and len(found) == 2 and found)
    assert [(m["channel"], m["message"]) for m in both] == expected
    signed_in = poll(Cookie="session_id=partner")
    assert [m["channel"] for m in signed_in] == [name, "broadcast", record]
    peeked = rpc(
        server, "/longpolling/poll", {"channels": [name], "last": 10**9, "options": {"peek": True}}
    )["result"]
    assert peeked["channels"] == [name, "broadcast"]
    assert [m["message"] for m in peeked["notifications"]] == [{"n": 1}, {"to": "all"}]
    waiting = rpc(
        server,
        "/longpolling/poll",
        {"channels": [name], "last": 0, "options": {"peek": True, "bus_inactivity": 5}},
    )
    assert len(waiting["result"]["notifications"]) == 2
    status, headers, body = _get(server, "/longpolling/health")
    assert (status, json.loads(body)) == (200, {"status": "pass"})
    assert headers["cache-control"] == "no-store"
    anonymous = rpc(server, "/longpolling/im_status", {"partner_ids": [7]})
    assert anonymous["error"]["code"] == 100
    signed = rpc(
        server, "/longpolling/im_status", {"partner_ids": [7]}, Cookie="session_id=partner"
    )
    assert "no presence" in signed["error"]["data"]["message"]
    bad = rpc(server, "/longpolling/poll", {"channels": [{"x": 1}], "last": 0})
    assert bad["error"]["code"] == 200


def test_odoo_16_side_routes(server_factory: ServerFactory, fresh_database: str) -> None:
    server = start(server_factory, "--workers", "1", "--db-uri", fresh_database)
    name = channel()
    assert publish(server, name, {"n": 1}) == 200
    peek = eventually(
        lambda: (lambda r: r["result"]["notifications"] and r)(
            rpc(
                server,
                "/websocket/peek_notifications",
                {"channels": [name], "last": 0, "is_first_poll": True},
            )
        )
    )
    assert peek["result"]["channels"] == [name, "broadcast"]
    assert [(set(m), m["message"]) for m in peek["result"]["notifications"]] == [
        ({"id", "message"}, {"n": 1})
    ]
    refused = rpc(
        server, "/websocket/peek_notifications", {"channels": [["db", "res.partner", 7]], "last": 0}
    )
    assert "only string channels" in refused["error"]["data"]["message"]
    presence = rpc(
        server,
        "/websocket/update_bus_presence",
        {"inactivity_period": 0, "im_status_ids_by_model": {}},
    )
    assert presence["result"] == {}  # the public user's presence is not kept, in Odoo too
    status, headers, body = _get(server, "/websocket/health")
    assert status == 200 and json.loads(body)["status"] == "pass"
    assert headers["cache-control"] == "no-store"


def _get(server: Server, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.realtime_port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return (response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def test_an_upgrade_on_the_http_port_gets_directions(bus_server: Server) -> None:
    conn = bus_server.http()
    conn.request(
        "GET",
        "/websocket",
        headers={
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    )
    response = conn.getresponse()
    text = response.read().decode()
    assert response.status == 400
    assert f"port {bus_server.realtime_port}" in text
    assert "location /websocket" in text and "proxy_set_header Upgrade" in text
    assert "Traceback" not in bus_server.log()


def test_bus_send_from_the_command_line(bus_server: Server, database_uri: str) -> None:
    import subprocess

    name = channel()
    with websocket(bus_server) as ws:
        subscribe(ws, [name])
        result = subprocess.run(
            [PREFORK, "bus", "send", name, '{"from": "cli"}'],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert receive(ws, 1)[0]["message"] == {"from": "cli"}
    bad = subprocess.run(
        [PREFORK, "bus", "send", name, "{oops"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "not valid JSON" in bad.stderr
    # A record channel, spaced as a person types it, is published under its compact name,
    # the one its subscribers are given.
    record = f'["{name}", "res.partner", 8]'
    sent = subprocess.run(
        [PREFORK, "bus", "send", record, '{"n": 8}'], capture_output=True, text=True, timeout=60
    )
    assert sent.returncode == 0, sent.stderr
    with psycopg.connect(database_uri) as conn:
        rows = conn.execute(
            "SELECT channel FROM prefork.bus_message WHERE channel LIKE %s", (f"%{name}%",)
        ).fetchall()
    assert sorted(row[0] for row in rows) == sorted([name, f'["{name}","res.partner",8]'])
    broken = subprocess.run(
        [PREFORK, "bus", "send", "[oops", "{}"], capture_output=True, text=True, timeout=60
    )
    assert broken.returncode == 2 and "record channel" in broken.stderr


def test_postgres_restart_dispatcher_reconnects_and_catches_up(
    embedded_data: Path, server_factory: ServerFactory
) -> None:
    """Embedded PostgreSQL stopped under a subscribed client, then started again (by the
    master): the client stays connected and receives what is published once the database
    is back."""
    from tests.integration.conftest import embedded_down

    server = start(
        server_factory,
        "--workers",
        "1",
        "--data-dir",
        str(embedded_data),
        env={"PREFORK_DB_URI": ""},
    )
    pgdata = embedded_data / "postgres"
    name = channel()
    with websocket(server) as ws:
        subscribe(ws, [name])
        assert publish(server, name, {"n": 1}) == 200
        assert [m["message"] for m in receive(ws, 1)] == [{"n": 1}]
        with embedded_down(pgdata):
            eventually(lambda: not health(server)["bus_connected"])
            assert publish(server, name, {"n": 2}) == 503  # nothing written while it is down
        assert eventually(lambda: publish(server, name, {"n": 3}) == 200, 90)
        assert [m["message"] for m in receive(ws, 1, timeout=20)] == [{"n": 3}]
        assert health(server)["bus_connected"]
        assert nothing_more(ws)


def test_a_client_that_never_answers_pings_is_dropped_with_1011(
    server_factory: ServerFactory,
) -> None:
    """A raw client completes the handshake, then reads nothing: no pong goes back."""
    import base64
    import socket
    import struct

    server = start(
        server_factory,
        "--workers",
        "1",
        "--websocket-ping-interval",
        "0.5",
        "--websocket-ping-timeout",
        "0.5",
    )
    sock = socket.create_connection(("127.0.0.1", server.realtime_port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /websocket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    time.sleep(3)  # pings arrive and stay unanswered
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    sock.close()
    head, _, frames = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    codes = []
    while frames:
        opcode, length = frames[0] & 0x0F, frames[1] & 0x7F
        payload, frames = frames[2 : 2 + length], frames[2 + length :]
        if opcode == 0x8:
            codes.append(struct.unpack("!H", payload[:2])[0])
    assert codes == [1011]


def test_old_bus_messages_are_collected(server_factory: ServerFactory, fresh_database: str) -> None:
    """Messages older than bus_retention go when the realtime process starts (and every
    minute after); newer ones stay for clients catching up."""
    from prefork.db.schema import migrate_postgres

    with psycopg.connect(fresh_database) as conn:
        migrate_postgres(conn)
        conn.execute(
            "INSERT INTO prefork.bus_message (id, channel, message, created_at) "
            "VALUES (1, 'old', '{}', now() - interval '2 hours'), "
            "(2, 'recent', '{}', now() - interval '10 minutes')"
        )
        conn.commit()
    start(server_factory, "--workers", "1", "--db-uri", fresh_database, "--bus-retention", "3600")

    def remaining() -> list[str]:
        with psycopg.connect(fresh_database) as conn:
            rows = conn.execute("SELECT channel FROM prefork.bus_message ORDER BY id")
            return [row[0] for row in rows.fetchall()]

    assert eventually(lambda: remaining() == ["recent"])


def test_the_realtime_soft_memory_limit_recycles_it(server_factory: ServerFactory) -> None:
    server: Server = server_factory.start(
        *APP, "--workers", "1", "--limit-memory-soft-gevent", "1M"
    )
    server.wait_log(
        r"realtime process \(pid \d+\) exited: memory-soft, RSS [\d.]+ MiB > "
        r"limit 1\.0 MiB",
        timeout=20,
    )
    server.wait_log(r"spawned realtime process pid=\d+[\s\S]*spawned realtime process pid=")


def test_clients_catching_up_at_once_queue_for_a_small_pool(
    server_factory: ServerFactory, fresh_database: str
) -> None:
    """30 clients reconnecting at once, 2,000 messages behind each, get every message while
    the realtime process holds no more than its catch-up pool (4) and the bus's two."""
    server = start(server_factory, "--workers", "1", "--db-uri", fresh_database)
    name = channel()
    with websocket(server) as live:
        subscribe(live, [name])
        assert publish(server, name, {"n": 0}) == 200
        start_id = receive(live, 1)[0]["id"]
        with psycopg.connect(fresh_database) as conn:
            for n in range(1, 2001):
                write(conn, name, {"n": n})
        assert len(receive(live, 2000, timeout=30)) == 2000  # the bus has them all

    def realtime_connections() -> int:
        with psycopg.connect(fresh_database, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                "current_database() AND application_name LIKE "
                "'prefork realtime %'"
            ).fetchone()
        return int(row[0]) if row else 0

    peak, results = 0, []
    go = threading.Barrier(31)

    def catch_up() -> None:
        with websocket(server) as ws:
            go.wait(30)
            subscribe(ws, [name], last=start_id)
            results.append([m["message"]["n"] for m in receive(ws, 2000, timeout=60)])

    clients = [threading.Thread(target=catch_up) for _ in range(30)]
    for client in clients:
        client.start()
    go.wait(30)
    while any(client.is_alive() for client in clients):
        peak = max(peak, realtime_connections())
        time.sleep(0.01)
    assert results == [list(range(1, 2001))] * 30
    assert 2 < peak <= 6, peak


def test_clients_that_never_read_are_closed_past_the_queue_limit(
    server_factory: ServerFactory,
) -> None:
    """Three clients stop reading while 12 MiB of messages go out: each is closed with 1013
    once 1 MiB waits for it (they reconnect from their last id), the realtime process keeps
    no more than that for them, and a client that reads gets every message."""
    server = start(server_factory, "--workers", "1", "--websocket-queue-limit", "1M")
    name, big = channel(), "x" * (64 << 10)
    pid = realtime_pid(server)
    stuck, clients = [], ExitStack()
    for _ in range(3):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # before connect
        sock.connect(("127.0.0.1", server.realtime_port))
        stuck.append(
            clients.enter_context(
                connect(  # it reads no more than one frame
                    f"ws://127.0.0.1:{server.realtime_port}/websocket",
                    sock=sock,
                    max_queue=1,
                    open_timeout=10,
                )
            )
        )
        subscribe(stuck[-1], [name])
    reader = clients.enter_context(
        connect(  # frames batch several 64 KiB messages
            f"ws://127.0.0.1:{server.realtime_port}/websocket", max_size=None, open_timeout=10
        )
    )
    with clients:
        subscribe(reader, [name])
        time.sleep(0.5)  # the subscriptions are in
        before = psutil.Process(pid).memory_info().rss
        got: list[dict[str, Any]] = []
        reading = threading.Thread(target=lambda: got.extend(receive(reader, 200, 60)))
        reading.start()
        for n in range(200):
            assert publish(server, name, {"n": n, "pad": big}) == 200
        reading.join(60)
        assert [m["message"]["n"] for m in got] == list(range(200))
        grown = psutil.Process(pid).memory_info().rss - before
        assert [closed_with(ws, timeout=30) for ws in stuck] == [1013] * 3
    assert "websocket: closed a client too slow to read (1013)" in server.log()
    assert grown < 24 << 20, f"{grown >> 20} MiB"  # unbounded: 3 x 12.5 MiB of frames


def _raw_answer(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


@pytest.mark.parametrize("host", [b"", b"Host: a\r\nHost: b\r\n", b"Host: user@evil\r\n"])
def test_the_realtime_endpoints_refuse_a_bad_host_with_400(any_mode: Server, host: bytes) -> None:
    """RFC 9112 3.2 on the realtime port as on http_port: HTTP/1.1 without Host, with two,
    or with one that is no authority gets 400 from long polling and the websocket
    handshake alike, and the connection is closed."""
    body = b'{"jsonrpc": "2.0", "method": "call", "id": 1, "params": {"channels": []}}'
    poll = (
        b"POST /longpolling/poll HTTP/1.1\r\n" + host + b"Content-Type: application/json"
        b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    )
    handshake = (
        b"GET /websocket HTTP/1.1\r\n" + host + b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    for raw in (poll, handshake):
        head = _raw_answer(any_mode.realtime_port, raw).partition(b"\r\n\r\n")[0].lower()
        assert head.startswith(b"http/1.1 400"), (raw, head)
        assert b"\r\nconnection: close" in head
    good = b"GET /websocket/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    assert _raw_answer(any_mode.realtime_port, good).startswith(b"HTTP/1.1 200")


def test_an_absolute_form_handshake_is_routed_by_its_path(any_mode: Server) -> None:
    """RFC 9112 3.2.2: `GET http://host/websocket` is the websocket route (it got 403: the
    whole target was taken for the path), its authority the Host; a bad authority is 400."""

    def answer(target: bytes) -> bytes:
        raw = (
            b"GET " + target + b" HTTP/1.1\r\nHost: header.example\r\nUpgrade: websocket"
            b"\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", any_mode.realtime_port), timeout=10) as sock:
            sock.sendall(raw)
            head = b""
            while b"\r\n\r\n" not in head and (chunk := sock.recv(4096)):
                head += chunk
        return head.split(b"\r\n", 1)[0]

    assert answer(b"http://127.0.0.1:8069/websocket") == b"HTTP/1.1 101 Switching Protocols"
    assert answer(b"http://user@/websocket").startswith(b"HTTP/1.1 400")
