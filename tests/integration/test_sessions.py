"""Sessions across real worker processes, with the file, Redis and memory stores."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import PREFORK, ROOT, Server, ServerFactory, free_port, in_rounds
from tests.integration.test_master import wait_workers

APP = ("--app", "tests.apps.sessionapp:app", "--max-cron-threads", "0")
REDIS = shutil.which("redis-server")


def request(
    server: Server, path: str, cookie: str = "", **headers: str
) -> tuple[int, dict[str, Any], str]:
    """(status, JSON body, Set-Cookie) on a new connection, so any worker may answer."""
    conn = server.http(timeout=15)
    try:
        if cookie:
            headers["Cookie"] = cookie
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        body = json.loads(raw) if response.status == 200 else {"text": raw.decode()}
        return response.status, body, response.getheader("Set-Cookie") or ""
    finally:
        conn.close()


def cookie_of(set_cookie: str) -> str:
    return set_cookie.split(";", 1)[0]


def served_by(server: Server, cookie: str, expected: dict[str, Any], want: int) -> int:
    """How many workers served the session, each read as `expected`: concurrent clients,
    a new connection per request, rounds until `want` workers took part (or 5 rounds)."""
    pids: set[int] = set()
    for _ in range(5):
        pids |= _one_round(server, cookie, expected)
        if len(pids) >= want:
            break
    return len(pids)


def _one_round(server: Server, cookie: str, expected: dict[str, Any]) -> set[int]:
    pids: set[int] = set()
    wrong: list[Any] = []

    def client() -> None:
        for _ in range(10):
            status, body, again = request(server, "/", cookie)
            if status != 200 or body["session"] != expected or again:
                wrong.append((status, body, again))  # unchanged: no write, no new cookie
            pids.add(body.get("pid", 0))

    threads = [threading.Thread(target=client) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert wrong == []
    return pids


def served_pids_of_page(server: Server, cookie: str, user: str) -> set[int]:
    """Pids named on the demo page for requests carrying `cookie`, each page showing
    `user` signed in (concurrent clients, a new connection per request)."""
    pids: set[int] = set()
    wrong: list[str] = []

    def client() -> None:
        for _ in range(10):
            conn = server.http(timeout=15)
            try:
                conn.request("GET", "/", headers={"Cookie": cookie})
                page = conn.getresponse().read().decode()
            finally:
                conn.close()
            if f"signed in as <b>{user}</b>" not in page:
                wrong.append(page[:200])
            match = re.search(r'id="served-by">pid (\d+)', page)
            pids.add(int(match.group(1)) if match else 0)

    in_rounds(client, 6, lambda: len(pids) >= 2)
    assert wrong == []
    return pids


def session_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "data" / "sessions").rglob("*.json"))


def test_a_session_written_by_one_worker_is_read_by_the_others(
    server_factory: ServerFactory,
) -> None:
    server = server_factory.start(*APP, "--workers", "4")
    wait_workers(server, 4)
    status, body, set_cookie = request(server, "/login?user=ada")
    assert status == 200 and body["session"] == {"user": "ada"}
    cookie = cookie_of(set_cookie)
    assert served_by(server, cookie, {"user": "ada"}, 2) >= 2, (
        "every request went to one worker: nothing was shared"
    )


def test_cookie_flags_and_secure_behind_a_proxy(server_factory: ServerFactory) -> None:
    server = server_factory.start(*APP, "--workers", "1", "--proxy-mode")
    _, _, plain = request(server, "/set?key=a&value=1")
    attributes = [part.strip().lower() for part in plain.split(";")]
    assert "httponly" in attributes and "samesite=lax" in attributes and "path=/" in attributes
    assert "secure" not in attributes
    _, body, secure = request(server, "/set?key=a&value=1", **{"X-Forwarded-Proto": "https"})
    assert body["scheme"] == "https"
    assert "secure" in [part.strip().lower() for part in secure.split(";")]
    value = cookie_of(plain).split("=", 1)[1]
    sid, _, mac = value.partition(".")
    assert len(sid) == 43 and mac  # 256 random bits, signed


def test_login_rotates_the_id_and_logout_destroys(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory.start(*APP, "--workers", "2")
    _, _, first = request(server, "/set?key=theme&value=dark")
    planted = cookie_of(first)
    _, body, rotated = request(server, "/login?user=ada", planted)
    assert body["session"] == {"theme": "dark", "user": "ada"}  # data kept
    assert cookie_of(rotated) != planted  # the id changed (fixation)
    assert request(server, "/", planted)[1]["session"] == {}  # the old id is dead
    assert len(session_files(tmp_path)) == 1
    _, _, gone = request(server, "/logout", cookie_of(rotated))
    assert "max-age=0" in gone.lower()
    assert request(server, "/", cookie_of(rotated))[1]["session"] == {}
    assert session_files(tmp_path) == []


def test_a_tampered_or_unknown_cookie_gets_a_new_session(server_factory: ServerFactory) -> None:
    server = server_factory.start(*APP, "--workers", "1")
    _, _, set_cookie = request(server, "/login?user=ada")
    name, value = cookie_of(set_cookie).split("=", 1)
    sid, _, mac = value.partition(".")
    forged = f"{name}={sid[:-1]}{'A' if sid[-1] != 'A' else 'B'}.{mac}"
    status, body, new = request(server, "/set?key=x&value=1", forged)
    assert status == 200 and body["session"] == {"x": "1"}
    assert cookie_of(new).split("=", 1)[1].partition(".")[0] not in (sid, forged)
    assert request(server, "/", f"{name}=garbage")[1]["session"] == {}
    assert request(server, "/", f"{name}={'A' * 43}.{mac}")[1]["session"] == {}


def test_foreign_cookies_in_front_keep_the_session(server_factory: ServerFactory) -> None:
    """Another app on the domain set a JSON cookie: the browser sends it before ours
    (SimpleCookie dropped the whole header then, and the user was signed out)."""
    server = server_factory.start(*APP, "--workers", "1")
    ours = cookie_of(request(server, "/login?user=ada")[2])
    header = f'pref={{"theme":"dark"}}; consent="a b"; ;flag; {ours}; tz=Europe/Brussels'
    status, body, again = request(server, "/", header)
    assert status == 200 and body["session"] == {"user": "ada"} and again == ""


def test_concurrent_writes_from_four_workers_never_corrupt(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory.start(*APP, "--workers", "4", "--no-access-log")
    shared = cookie_of(request(server, "/count")[2])
    own = [cookie_of(request(server, "/count")[2]) for _ in range(4)]
    failures: list[str] = []

    def client(cookie: str) -> None:
        for _ in range(40):
            status, body, _ = request(server, "/count", cookie)
            if status != 200 or not isinstance(body["session"].get("count"), int):
                failures.append(f"{status} {body}")

    threads = [threading.Thread(target=client, args=(c,)) for c in [shared] * 4 + own]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == []
    for cookie in own:  # one writer each: every increment kept
        assert request(server, "/", cookie)[1]["session"]["count"] == 41
    for path in session_files(tmp_path):
        assert json.loads(path.read_text())["data"]["count"] >= 1
    leftovers = [
        p
        for p in (tmp_path / "data" / "sessions").rglob("*")
        if p.is_file() and not p.name.endswith(".json")
    ]
    assert leftovers == []


def test_idle_expiry_and_the_clean_up_job(server_factory: ServerFactory, tmp_path: Path) -> None:
    server = server_factory.start(*APP, "--workers", "1", "--session-idle-timeout", "1")
    cookie = cookie_of(request(server, "/login?user=ada")[2])
    assert request(server, "/", cookie)[1]["session"] == {"user": "ada"}
    time.sleep(1.5)
    assert request(server, "/", cookie)[1]["session"] == {}  # expired: a new one
    for n in range(3):
        request(server, f"/set?key=n&value={n}")
    assert len(session_files(tmp_path)) == 3
    time.sleep(1.5)
    result = subprocess.run(
        [
            PREFORK,
            "cron",
            "run",
            "prefork.session_gc",
            "--foreground",
            "--data-dir",
            str(tmp_path / "data"),
            "--session-idle-timeout",
            "1",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert session_files(tmp_path) == []


def test_absolute_lifetime(server_factory: ServerFactory) -> None:
    server = server_factory.start(*APP, "--workers", "1", "--session-max-lifetime", "2")
    cookie = cookie_of(request(server, "/login?user=ada")[2])
    for _ in range(3):  # used all along, still gone after 2 s
        time.sleep(0.8)
        last = request(server, "/", cookie)[1]["session"]
    assert last == {}


def test_memory_store_is_refused_with_workers(server_factory: ServerFactory) -> None:
    server = server_factory.start(*APP, "--workers", "2", "--session-store", "memory", wait=False)
    assert server.proc.wait(30) == 2
    log = server.log()
    assert "session_store = memory" in log and "session_store = file" in log
    assert "redis://" in log and "Traceback" not in log


def test_memory_store_serves_threaded_mode(server_factory: ServerFactory) -> None:
    server = server_factory.start(*APP, "--session-store", "memory")
    cookie = cookie_of(request(server, "/login?user=ada")[2])
    assert request(server, "/", cookie)[1]["session"] == {"user": "ada"}


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[tuple[int, Any]]:
    """A redis-server of the test's own, on a free port, that the test can stop and
    start again on the same port."""
    if REDIS is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        assert REDIS is not None
        procs.append(
            subprocess.Popen(
                [
                    REDIS,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(tmp_path),
                ],
                stdout=subprocess.DEVNULL,
            )
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop() -> None:
        procs[-1].send_signal(signal.SIGTERM)
        procs[-1].wait(10)

    start()
    yield port, (start, stop)
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_redis_store_shares_sessions_and_survives_an_outage(
    server_factory: ServerFactory, redis_server: Any
) -> None:
    port, (start, stop) = redis_server
    url = f"redis://127.0.0.1:{port}/0"
    server = server_factory.start(*APP, "--workers", "2", "--session-store", url)
    wait_workers(server, 2)
    cookie = cookie_of(request(server, "/login?user=ada")[2])
    assert served_by(server, cookie, {"user": "ada"}, 2) == 2
    stop()
    for _ in range(30):
        status, body, _ = request(server, "/", cookie)
        assert status == 503 and "session store unavailable" in body["text"]
    # One line per worker (at most one each 10 s, the next one counting those left out).
    assert 1 <= server.log().count("503 for GET /: session store unavailable") <= 2
    assert request(server, "/none")[0] == 200  # a request that never reads its session
    start()  # an empty Redis: the session is gone, the service is back
    deadline = time.monotonic() + 15
    while request(server, "/", cookie)[0] != 200:
        assert time.monotonic() < deadline, "never recovered"
        time.sleep(0.2)
    fresh = cookie_of(request(server, "/login?user=bob")[2])
    assert request(server, "/", fresh)[1]["session"] == {"user": "bob"}
    assert "Traceback" not in server.log()


def test_realtime_authenticates_from_the_session_store(server_factory: ServerFactory) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    server = server_factory.start(*APP, "--workers", "1")
    cookie = cookie_of(request(server, "/login?user=ada")[2])
    port = server.realtime_port

    def close_code(headers: dict[str, str]) -> int | None:
        deadline = time.monotonic() + 15
        while True:
            try:
                with connect(
                    f"ws://127.0.0.1:{port}/websocket", additional_headers=headers, open_timeout=5
                ) as ws:
                    ws.send('{"event_name": "subscribe", "data": {"channels": ["x"]}}')
                    try:
                        ws.recv(timeout=1)
                    except TimeoutError:
                        return None  # still open: accepted
                    return None
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
            except Exception as exc:  # closed by the server
                rcvd = getattr(exc, "rcvd", None)
                return rcvd.code if rcvd is not None else -1

    assert close_code({"Cookie": cookie}) is None
    assert close_code({}) is None  # no cookie: anonymous
    name, value = cookie.split("=", 1)
    forged = ("y" if value[0] == "x" else "x") + value[1:]  # the id's first letter changed
    assert close_code({"Cookie": f"{name}={forged}"}) is None  # served as anonymous (Odoo)
    with connect(
        f"ws://127.0.0.1:{port}/websocket", additional_headers={"Cookie": cookie}, open_timeout=5
    ) as ws:
        ws.send('{"event_name": "subscribe", "data": {"channels": ["x"]}}')
        request(server, "/logout", cookie)
        ws.send('{"event_name": "subscribe", "data": {"channels": ["x"]}}')
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
    assert close_code({"Cookie": cookie}) is None  # signed out: now an anonymous client


def test_session_store_option_is_validated(tmp_path: Path) -> None:
    result = subprocess.run(
        [PREFORK, "check", "--session-store", "mongodb://x", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={**os.environ},
    )
    assert result.returncode == 2
    assert "--session-store" in result.stderr and "Redis URL" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(
    not os.environ.get("PREFORK_TEST_REDIS"),
    reason="PREFORK_TEST_REDIS names no running Redis (.ci/run sets it to the machine's)",
)
def test_redis_store_with_the_machines_redis(server_factory: ServerFactory) -> None:
    url = os.environ["PREFORK_TEST_REDIS"]
    server = server_factory.start(*APP, "--workers", "2", "--session-store", url)
    wait_workers(server, 2)
    cookie = cookie_of(request(server, "/login?user=grace")[2])
    assert served_by(server, cookie, {"user": "grace"}, 2) == 2
    request(server, "/logout", cookie)
    assert request(server, "/", cookie)[1]["session"] == {}
