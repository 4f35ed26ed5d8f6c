"""The HTTP and realtime services on Unix sockets (http_interface / gevent_interface =
unix:PATH): real servers started through the console script, real clients on the socket."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from websockets.sync.client import connect

from prefork.bus.store import write
from tests.integration.conftest import PREFORK, ROOT, Server, free_port, start_server
from tests.integration.test_nginx import NGINX, generate, running_nginx

# Every test here starts `prefork run`: it finds the test database through PREFORK_DB_URI.
pytestmark = pytest.mark.usefixtures("database_uri")

APP = ("--app", "tests.apps.testapp:app", "--max-cron-threads", "0")
MODES = {"threaded": ("--workers", "0"), "workers": ("--workers", "2")}
READY = r"HTTP service running on unix:"


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 10.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def get(path: str, target: str, **headers: str) -> tuple[int, bytes]:
    conn = UnixHTTPConnection(path)
    try:
        conn.request("GET", target, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.fixture
def sockets_dir() -> Iterator[Path]:
    """A short directory (sun_path holds 107 bytes; pytest's tmp_path is long) that
    nginx's unprivileged workers may enter."""
    path = Path(tempfile.mkdtemp(prefix="pf-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def started() -> Iterator[list[Server]]:
    servers: list[Server] = []
    yield servers
    for server in servers:
        server.stop(20)


def serve(started: list[Server], tmp_path: Path, *args: str, app: tuple[str, ...] = APP) -> Server:
    server = start_server(tmp_path, *app, *args, wait=False)
    started.append(server)
    server.wait_log(READY, timeout=30)
    return server


@pytest.mark.parametrize("mode", list(MODES))
def test_serves_on_a_unix_socket_and_removes_it_at_the_end(
    mode: str, started: list[Server], tmp_path: Path, sockets_dir: Path
) -> None:
    path = str(sockets_dir / "app.sock")
    server = serve(started, tmp_path, *MODES[mode], "--http-interface", f"unix:{path}")
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660  # unix_socket_mode's default
    status, body = get(path, "/echo")
    assert status == 200
    assert json.loads(body)["remote_addr"] == ""  # no network address: as gunicorn says
    assert server.stop(20) == 0
    assert not os.path.exists(path)


def test_proxy_mode_gives_the_forwarded_address(
    started: list[Server], tmp_path: Path, sockets_dir: Path
) -> None:
    path = str(sockets_dir / "app.sock")
    serve(
        started,
        tmp_path,
        "--workers",
        "1",
        "--proxy-mode",
        "--http-interface",
        f"unix:{path}",
        "--unix-socket-mode",
        "0600",
    )
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    status, body = get(path, "/echo", **{"X-Forwarded-For": "203.0.113.9"})
    assert status == 200 and json.loads(body)["remote_addr"] == "203.0.113.9"


def test_a_stale_socket_file_is_replaced(
    started: list[Server], tmp_path: Path, sockets_dir: Path
) -> None:
    path = str(sockets_dir / "app.sock")
    left = socket.socket(socket.AF_UNIX)
    left.bind(path)  # a killed server's file: nothing accepts on it
    left.close()
    serve(started, tmp_path, "--workers", "1", "--http-interface", f"unix:{path}")
    assert get(path, "/echo")[0] == 200


@pytest.mark.parametrize("occupant", ["server", "file"])
def test_a_live_socket_or_another_file_is_refused(
    occupant: str, tmp_path: Path, sockets_dir: Path
) -> None:
    path = sockets_dir / "app.sock"
    live = socket.socket(socket.AF_UNIX)
    if occupant == "server":
        live.bind(str(path))
        live.listen(1)
    else:
        path.write_text("not a socket")
    try:
        ran = subprocess.run(
            [
                PREFORK,
                "run",
                *APP,
                "--workers",
                "1",
                "--http-interface",
                f"unix:{path}",
                "--data-dir",
                str(tmp_path / "data"),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        reason = (
            "another server is listening there"
            if occupant == "server"
            else "the file exists and is not a socket"
        )
        assert ran.returncode == 1, ran.stderr
        assert f"cannot listen on unix:{path} (http_interface): {reason}" in ran.stderr
        assert "Traceback" not in ran.stderr
        assert path.exists()  # left as it was
        if occupant == "server":
            assert stat.S_ISSOCK(path.stat().st_mode)
    finally:
        live.close()


def test_hup_and_upgrade_keep_the_socket(
    started: list[Server], tmp_path: Path, sockets_dir: Path
) -> None:
    path = str(sockets_dir / "app.sock")
    server = serve(started, tmp_path, "--workers", "2", "--http-interface", f"unix:{path}")
    inode = os.stat(path).st_ino
    before = {json.loads(get(path, "/echo")[1])["pid"] for _ in range(8)}
    server.signal(signal.SIGHUP)
    server.wait_log(r"reload: \d+ new worker\(s\) ready", timeout=30)
    assert get(path, "/echo")[0] == 200
    server.signal(signal.SIGUSR2)
    new_pid = int(
        server.wait_log(r"upgrade: started a new master \(pid (\d+)\)", timeout=30).group(1)
    )
    try:
        assert server.proc.wait(60) == 0  # the old master leaves the socket to the new one
        assert os.stat(path).st_ino == inode
        after = {json.loads(get(path, "/echo")[1])["pid"] for _ in range(8)}
        assert not before & after
    finally:
        os.kill(new_pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(path)  # removed by the master that stopped for good


def test_threaded_hup_reexec_keeps_the_socket(
    started: list[Server], tmp_path: Path, sockets_dir: Path
) -> None:
    path = str(sockets_dir / "app.sock")
    server = serve(started, tmp_path, "--workers", "0", "--http-interface", f"unix:{path}")
    inode = os.stat(path).st_ino
    server.signal(signal.SIGHUP)
    server.wait_log("re-executing", timeout=30)
    deadline = time.monotonic() + 30
    while server.log().count("HTTP service running on unix:") < 2:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    assert os.stat(path).st_ino == inode
    assert get(path, "/echo")[0] == 200


SOCKET_ACTIVATE = shutil.which("systemd-socket-activate")


@pytest.mark.skipif(SOCKET_ACTIVATE is None, reason="systemd-socket-activate not installed")
def test_systemd_socket_activation_on_a_unix_socket(tmp_path: Path, sockets_dir: Path) -> None:
    """systemd (here its systemd-socket-activate) binds the socket and owns its file."""
    assert SOCKET_ACTIVATE is not None
    path = str(sockets_dir / "app.sock")
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            # It passes the children only the environment it is told to.
            [
                SOCKET_ACTIVATE,
                "-l",
                path,
                "-E",
                "PREFORK_DB_URI",
                PREFORK,
                "run",
                *APP,
                "--workers",
                "2",
                "--http-interface",
                f"unix:{path}",
                "--gevent-port",
                "0",
                "--data-dir",
                str(tmp_path / "data"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    server = Server(proc, log_path)
    try:
        server.wait_log("Listening on", timeout=30)
        # systemd starts the service on the first connection, which waits in the backlog.
        assert get(path, "/echo")[0] == 200, server.log()
        server.wait_log("using 1 inherited listening socket")
        server.wait_log(READY + path)
    finally:
        assert server.stop(20) == 0
    assert os.path.exists(path)  # systemd's to remove, not prefork's


def test_realtime_on_its_own_unix_socket(
    started: list[Server], tmp_path: Path, sockets_dir: Path
) -> None:
    http_path, bus_path = str(sockets_dir / "app.sock"), str(sockets_dir / "bus.sock")
    server = serve(
        started,
        tmp_path,
        "--workers",
        "1",
        "--http-interface",
        f"unix:{http_path}",
        "--gevent-interface",
        f"unix:{bus_path}",
    )
    server.wait_log(r"realtime service \(websocket, long-polling\) on unix:" + bus_path)
    assert stat.S_IMODE(os.stat(bus_path).st_mode) == 0o660
    deadline = time.monotonic() + 30
    while get(bus_path, "/websocket/health")[0] != 200:  # until it listens to the bus
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.1)
    # A websocket upgrade sent to the HTTP socket is told where the realtime one is.
    status, body = get(http_path, "/websocket", Upgrade="websocket", Connection="Upgrade")
    assert status == 400 and f"the Unix socket {bus_path}".encode() in body
    assert server.stop(20) == 0
    assert not os.path.exists(http_path) and not os.path.exists(bus_path)


def test_realtime_defaults_to_loopback_beside_a_unix_http_socket(
    started: list[Server], tmp_path: Path, sockets_dir: Path
) -> None:
    path = str(sockets_dir / "app.sock")
    server = serve(started, tmp_path, "--workers", "1", "--http-interface", f"unix:{path}")
    server.wait_log(r"realtime service \(websocket, long-polling\) on 127\.0\.0\.1:\d+")


def test_check_describes_the_unix_socket_and_leaves_no_file(
    tmp_path: Path, sockets_dir: Path
) -> None:
    path = sockets_dir / "app.sock"
    ran = subprocess.run(
        [
            PREFORK,
            "check",
            *APP,
            "--workers",
            "2",
            "--http-interface",
            f"unix:{path}",
            "--gevent-port",
            str(free_port()),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"2 HTTP worker process(es) on unix:{path}" in ran.stdout
    assert "1 realtime process (websocket/long-polling) on 127.0.0.1:" in ran.stdout
    assert not path.exists()


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("http_interface", "unix:", "unix:PATH"),
        ("http_interface", "unix:/" + "x" * 120, "at most 107 bytes"),
        ("gevent_interface", "unix:", "unix:PATH"),
        ("unix_socket_mode", "0999", "an octal file mode"),
    ],
)
def test_config_errors_name_the_file_line_and_key(
    key: str, value: str, expected: str, tmp_path: Path
) -> None:
    conf = tmp_path / "prefork.conf"
    conf.write_text(f"[options]\nworkers = 1\n{key} = {value}\n")
    ran = subprocess.run(
        [PREFORK, "check", "-c", str(conf), *APP],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 2
    assert f"{conf}:3: option '{key}'" in ran.stderr and expected in ran.stderr
    assert "Traceback" not in ran.stderr


def test_an_unknown_group_is_a_clear_error(tmp_path: Path, sockets_dir: Path) -> None:
    path = sockets_dir / "app.sock"
    ran = subprocess.run(
        [
            PREFORK,
            "run",
            *APP,
            "--workers",
            "1",
            "--http-interface",
            f"unix:{path}",
            "--unix-socket-group",
            "no-such-group-here",
            "--data-dir",
            str(tmp_path / "data"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 1
    assert "no group named 'no-such-group-here' (unix_socket_group)" in ran.stderr
    assert "Traceback" not in ran.stderr
    assert not path.exists()


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (.ci/run installs it)")
@pytest.mark.parametrize("mode", list(MODES))
def test_nginx_in_front_of_unix_sockets(
    mode: str, started: list[Server], tmp_path: Path, sockets_dir: Path, database_uri: str
) -> None:
    """`prefork nginx` names the sockets; nginx's workers (user nobody, group nogroup)
    reach them through unix_socket_group; pages and the websocket go through."""
    http_path, bus_path = str(sockets_dir / "app.sock"), str(sockets_dir / "bus.sock")
    args = (
        *MODES[mode],
        "--proxy-mode",
        "--http-interface",
        f"unix:{http_path}",
        "--gevent-interface",
        f"unix:{bus_path}",
        "--unix-socket-group",
        "nogroup",
    )
    serve(started, tmp_path, *args)
    listen = free_port()
    site = generate("--server-name", "localhost", "--listen", str(listen), *args)
    assert site.returncode == 0, site.stderr
    assert f"server unix:{http_path};" in site.stdout
    realtime = bus_path if mode == "workers" else http_path  # threaded: one socket
    assert f"upstream prefork_realtime {{\n    server unix:{realtime};" in site.stdout
    with running_nginx(tmp_path, site.stdout, listen):
        conn = http.client.HTTPConnection(
            "127.0.0.1", listen, timeout=10, source_address=("127.0.0.2", 0)
        )
        conn.request("GET", "/echo")
        response = conn.getresponse()
        assert response.status == 200
        assert json.loads(response.read())["remote_addr"] == "127.0.0.2"
        conn.close()
        deadline = time.monotonic() + 20
        while True:  # the realtime process may still be starting
            try:
                ws = connect(f"ws://127.0.0.1:{listen}/websocket", open_timeout=5)
                break
            except Exception:
                assert time.monotonic() < deadline, (tmp_path / "error.log").read_text()
                time.sleep(0.2)
        with ws:
            ws.send('{"event_name": "subscribe", "data": {"channels": ["unix.test"], "last": 0}}')
            time.sleep(0.5)
            with psycopg.connect(database_uri) as db:
                write(db, "unix.test", {"through": "a unix socket"})
            deadline = time.monotonic() + 10
            while not any(
                item["message"] == {"through": "a unix socket"}
                for item in json.loads(ws.recv(timeout=10))
            ):
                assert time.monotonic() < deadline


def test_a_missing_directory_is_named(tmp_path: Path, sockets_dir: Path) -> None:
    path = sockets_dir / "absent" / "app.sock"
    ran = subprocess.run(
        [
            PREFORK,
            "run",
            *APP,
            "--workers",
            "1",
            "--http-interface",
            f"unix:{path}",
            "--data-dir",
            str(tmp_path / "data"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 1
    assert f"the directory {path.parent} does not exist" in ran.stderr
    assert "Traceback" not in ran.stderr


@pytest.mark.parametrize("mode", list(MODES))
def test_a_file_download_on_a_unix_socket(
    mode: str, started: list[Server], tmp_path: Path, sockets_dir: Path
) -> None:
    """wsgi.file_wrapper's sendfile(2) to a Unix socket's client, byte-exact."""
    path = str(sockets_dir / "app.sock")
    data = os.urandom(3 << 20)
    (tmp_path / "blob").write_bytes(data)
    serve(
        started,
        tmp_path,
        *MODES[mode],
        "--http-interface",
        f"unix:{path}",
        app=("--app", "tests.apps.files:app", "--max-cron-threads", "0"),
    )
    status, body = get(path, f"/file?path={tmp_path / 'blob'}")
    assert status == 200 and body == data
