"""`prefork nginx`: the generated site passes `nginx -t` and, with real nginx in front of a
running prefork, serves pages, websockets through /web/websocket, and the client's own
address reaches the application."""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg
import pytest
from websockets.sync.client import connect

from prefork.bus.store import write
from tests.integration.conftest import PREFORK, ROOT, Server, ServerFactory, free_port

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
pytestmark = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (.ci/run installs it)"
)


def generate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PREFORK, "nginx", *args], capture_output=True, text=True, cwd=ROOT, timeout=60
    )


def nginx_conf(tmp_path: Path, site: str) -> Path:
    (tmp_path / "site.conf").write_text(site)
    conf = tmp_path / "nginx.conf"
    temp = tmp_path / "temp"
    temp.mkdir(exist_ok=True)
    conf.write_text(f"""
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log;
daemon off;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {tmp_path}/site.conf;
}}
""")
    return conf


def nginx_test(tmp_path: Path, conf: Path) -> subprocess.CompletedProcess[str]:
    assert NGINX is not None
    return subprocess.run(
        [NGINX, "-t", "-c", str(conf), "-p", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def nginx_in_front(
    server_factory: ServerFactory, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Server, int]]:
    """A server (multi-processing, or threaded with `indirect` param "0") behind nginx."""
    workers = getattr(request, "param", "2")
    http_port, realtime_port, listen = free_port(), free_port(), free_port()
    server = server_factory.start(
        "--app",
        "tests.apps.testapp:app",
        "--workers",
        workers,
        "--max-cron-threads",
        "0",
        "--proxy-mode",
        "-p",
        str(http_port),
        "--gevent-port",
        str(realtime_port),
    )
    site = generate(
        "--server-name",
        "localhost",
        "--listen",
        str(listen),
        "--proxy-mode",
        "-p",
        str(http_port),
        "--gevent-port",
        str(realtime_port),
        "--workers",
        workers,
    )
    assert site.returncode == 0, site.stderr
    assert "REMINDER" not in site.stdout
    with running_nginx(tmp_path, site.stdout, listen):
        yield server, listen


@contextmanager
def running_nginx(tmp_path: Path, site: str, listen: int) -> Iterator[None]:
    """nginx serving `site` (checked with `nginx -t` first), until the block ends."""
    conf = nginx_conf(tmp_path, site)
    checked = nginx_test(tmp_path, conf)
    assert checked.returncode == 0, checked.stderr
    assert NGINX is not None
    proc = subprocess.Popen(
        [NGINX, "-c", str(conf), "-p", str(tmp_path)], stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", listen), timeout=1).close()
                break
            except OSError:
                log = tmp_path / "error.log"
                said = log.read_text()[-2000:] if log.exists() else "no error.log"
                assert proc.poll() is None and time.monotonic() < deadline, (
                    f"nginx did not start: {said}"
                )
                time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        proc.wait(10)


def test_pages_and_the_clients_address_through_nginx(nginx_in_front: tuple[Server, int]) -> None:
    server, port = nginx_in_front
    # The client speaks from 127.0.0.2; nginx reaches prefork from 127.0.0.1.
    conn = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=10, source_address=("127.0.0.2", 0)
    )
    try:
        conn.request("GET", "/echo?x=1")
        response = conn.getresponse()
        report = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == 200
    assert report["remote_addr"] == "127.0.0.2"
    assert report["scheme"] == "http" and report["query"] == "x=1"
    assert dict(report["headers"])["X-FORWARDED-FOR"] == "127.0.0.2"
    assert report["pid"] != server.proc.pid  # served by a worker


def test_websocket_through_nginx(nginx_in_front: tuple[Server, int], database_uri: str) -> None:
    _, port = nginx_in_front
    url = f"ws://127.0.0.1:{port}/web/websocket"
    deadline = time.monotonic() + 15
    while True:  # the realtime process may still be starting
        try:
            client = connect(url, open_timeout=5)
            break
        except Exception:
            assert time.monotonic() < deadline, "no websocket through nginx"
            time.sleep(0.2)
    with client as ws:
        ws.send('{"event_name": "subscribe", "data": {"channels": ["nginx.test"], "last": 0}}')
        time.sleep(0.5)
        with psycopg.connect(database_uri) as conn:
            write(conn, "nginx.test", {"through": "nginx"})
        deadline = time.monotonic() + 10
        while True:
            items = json.loads(ws.recv(timeout=10))
            if any(item["message"] == {"through": "nginx"} for item in items):
                break
            assert time.monotonic() < deadline


@pytest.mark.parametrize("nginx_in_front", ["2", "0"], indirect=True, ids=["workers", "threaded"])
def test_long_polling_through_nginx_by_default(
    nginx_in_front: tuple[Server, int], database_uri: str
) -> None:
    """Odoo <= 15 clients poll /longpolling/poll: routed without any flag, to the realtime
    process, or in threaded mode to http_port, where the realtime endpoints are."""
    _, port = nginx_in_front
    with psycopg.connect(database_uri) as db:
        write(db, "nginx.poll", {"polled": "through nginx"})
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "method": "call",
            "id": 1,
            "params": {"channels": ["nginx.poll"], "last": 0},
        }
    )
    deadline = time.monotonic() + 15
    while True:  # the realtime process may still be starting
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            conn.request("POST", "/longpolling/poll", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            payload = response.read()
        finally:
            conn.close()
        if response.status == 200:
            break
        assert time.monotonic() < deadline, (response.status, payload)
        time.sleep(0.2)
    result = json.loads(payload)["result"]
    assert {"polled": "through nginx"} in [m["message"] for m in result]


def test_legacy_longpolling_is_accepted_and_changes_nothing() -> None:
    args = ("--server-name", "localhost")
    plain, legacy = generate(*args), generate(*args, "--legacy-longpolling")
    assert plain.returncode == legacy.returncode == 0
    assert plain.stdout == legacy.stdout and "location /longpolling {" in plain.stdout


def test_tls_site_passes_nginx_check(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    site = generate(
        "--server-name",
        "localhost",
        "--listen",
        str(free_port()),
        "--tls-listen",
        str(free_port()),
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        "--legacy-longpolling",
    )
    assert site.returncode == 0
    assert "REMINDER: proxy_mode is off" in site.stdout  # no --proxy-mode given
    assert "return 301 https://$host$request_uri;" in site.stdout
    assert "Strict-Transport-Security" in site.stdout and "location /longpolling" in site.stdout
    checked = nginx_test(tmp_path, nginx_conf(tmp_path, site.stdout))
    assert checked.returncode == 0, checked.stderr


def test_mismatched_tls_options_are_refused() -> None:
    result = generate("--server-name", "x", "--tls-cert", "/c.pem")
    assert result.returncode == 2 and "go together" in result.stderr


# -- several hosts: `prefork nginx --upstream` ------------------------------------------------

LIMIT = 3  # limit_time_real: nginx gives a POST limit_time_real + 10 s


@dataclass
class Host:
    server: Server
    marker: Path  # the test app writes a line there for each /stream response it closes

    def processes(self) -> list[psutil.Process]:
        """The server's workers, then its master: the order to freeze them in, and
        (reversed) to thaw them, so the master never sees a worker silent for long."""
        master = psutil.Process(self.server.proc.pid)
        return [*master.children(recursive=True), master]

    def tags(self) -> list[str]:
        lines = self.marker.read_text().splitlines() if self.marker.exists() else []
        return [line.removeprefix("stream ") for line in lines]


@pytest.fixture
def two_hosts(server_factory: ServerFactory, tmp_path: Path) -> Iterator[tuple[Host, Host, int]]:
    """Two servers, on 127.0.0.1 and 127.0.0.2 with HTTP ports of their own and one
    realtime port, behind nginx configured by `prefork nginx --upstream` for both."""
    ports, realtime, listen = (free_port(), free_port()), free_port(), free_port()
    hosts = []
    for address, port in zip(("127.0.0.1", "127.0.0.2"), ports, strict=True):
        marker = tmp_path / f"served-{address}"
        server = server_factory.start(
            "--app",
            "tests.apps.testapp:app",
            "--workers",
            "1",
            "--max-cron-threads",
            "0",
            "--proxy-mode",
            "--http-interface",
            address,
            "-p",
            str(port),
            "--gevent-port",
            str(realtime),
            "--limit-time-real",
            str(LIMIT),
            "--drain-delay",
            "2",
            env={"TESTAPP_CLOSE_MARKER": str(marker)},
        )
        server.host = address
        hosts.append(Host(server, marker))
    site = generate(
        "--server-name",
        "localhost",
        "--listen",
        str(listen),
        "--proxy-mode",
        "--workers",
        "1",
        "--gevent-port",
        str(realtime),
        "--limit-time-real",
        str(LIMIT),
        "--upstream",
        f"127.0.0.1:{ports[0]}",
        "--upstream",
        f"127.0.0.2:{ports[1]}",
        "--failover-timeout",
        "2",
    )
    assert site.returncode == 0, site.stderr
    assert f"server 127.0.0.2:{realtime} max_fails" in site.stdout
    with running_nginx(tmp_path, site.stdout, listen):
        yield hosts[0], hosts[1], listen


def through(
    port: int, method: str = "GET", path: str = "/echo", timeout: float = 15
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=b"" if method == "POST" else None)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_requests_reach_every_host(two_hosts: tuple[Host, Host, int]) -> None:
    first, second, port = two_hosts
    for number in range(6):
        assert through(port, "GET", f"/stream?n=1&tag=get{number}")[0] == 200
    deadline = time.monotonic() + 10  # close() runs once the response is sent: it may lag
    while len(first.tags() + second.tags()) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.tags() and second.tags()
    assert sorted(first.tags() + second.tags()) == [f"get{n}" for n in range(6)]


def test_a_frozen_host_is_passed_over_and_a_post_is_not_retried(
    two_hosts: tuple[Host, Host, int],
) -> None:
    """GETs time out on the frozen host after --failover-timeout and go to the other; a
    POST sent to it waits out its own timeout (504) and is never sent to the other."""
    frozen, other, port = two_hosts
    assert through(port)[0] == 200
    processes = frozen.processes()
    for process in processes:
        process.send_signal(signal.SIGSTOP)
    posts: dict[str, int] = {}
    senders = [
        threading.Thread(
            target=lambda tag=f"post{n}": posts.__setitem__(
                tag, through(port, "POST", f"/stream?n=1&tag={tag}", timeout=60)[0]
            )
        )
        for n in range(4)
    ]
    try:
        for sender in senders:  # round robin: some are sent to the frozen host
            sender.start()
        for _ in range(6):  # each within the client's timeout: nginx gives up on the host
            assert through(port)[0] == 200
        for sender in senders:  # frozen through the POSTs' timeout
            sender.join(LIMIT + 10 + 30)
    finally:
        for process in reversed(processes):
            process.send_signal(signal.SIGCONT)
    # Those sent to the frozen host got nginx's 504, none a second chance elsewhere.
    assert 504 in posts.values() and set(posts.values()) <= {200, 504}, posts
    assert sorted(posted(other)) == sorted(tag for tag, status in posts.items() if status == 200)
    assert len(set(posted(frozen))) == len(posted(frozen))  # at most once there too


def posted(host: Host) -> list[str]:
    return [tag for tag in host.tags() if tag.startswith("post")]


def test_draining_host_behind_nginx_fails_no_request(two_hosts: tuple[Host, Host, int]) -> None:
    leaving, staying, port = two_hosts
    outcomes: list[int] = []
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            try:
                outcomes.append(through(port)[0])
            except OSError:
                outcomes.append(0)

    client = threading.Thread(target=traffic)
    client.start()
    try:
        deadline = time.monotonic() + 10
        while len(outcomes) < 20:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        leaving.server.signal(signal.SIGTERM)
        assert leaving.server.proc.wait(30) == 0
        count = len(outcomes)
        deadline = time.monotonic() + 10
        while len(outcomes) < count + 20:  # and on, through the host that stays
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        stop.set()
        client.join(20)
    assert "draining for 2 s" in leaving.server.log()
    failed = [outcome for outcome in outcomes if outcome != 200]
    assert not failed, f"{len(failed)} failed of {len(outcomes)}: {set(failed)}"
    assert staying.server.proc.poll() is None


def test_bad_upstreams_are_refused() -> None:
    for bad in (
        "a b",
        "host:",
        "host:0",
        "host:70000",
        "[::1",
        "[nothost]:80",
        "x;y",
        "host:80:",
        "host:80:0",
        "[::1]:80:x",
    ):
        result = generate("--server-name", "x", "--upstream", bad)
        assert result.returncode == 2, bad
        assert "--upstream" in result.stderr and "Traceback" not in result.stderr
    twice = generate("--server-name", "x", "-p", "8069", "--upstream", "a", "--upstream", "a:8069")
    assert twice.returncode == 2 and "is already --upstream 'a'" in twice.stderr


def test_hosts_on_one_address_need_their_own_realtime_ports() -> None:
    """Two servers on one machine: their HTTP ports differ, and so must their realtime
    ports, which default to the one gevent_port of the configuration."""
    clash = generate(
        "--server-name",
        "x",
        "--workers",
        "2",
        "--upstream",
        "127.0.0.1:9001",
        "--upstream",
        "127.0.0.1:9002",
    )
    assert clash.returncode == 2
    assert (
        "--upstream '127.0.0.1:9002': 127.0.0.1:8072 is already --upstream "
        "'127.0.0.1:9001''s port" in clash.stderr
    ) and "Traceback" not in clash.stderr
    result = generate(
        "--server-name",
        "x",
        "--workers",
        "2",
        "--upstream",
        "127.0.0.1:9001:9101",
        "--upstream",
        "web2:9002:9102",
    )
    assert result.returncode == 0, result.stderr
    realtime = result.stdout.split("upstream prefork_realtime")[1].split("}")[0]
    assert "server 127.0.0.1:9101 max_fails" in realtime
    assert "server web2:9102 max_fails" in realtime


def test_ipv6_upstreams() -> None:
    result = generate(
        "--server-name", "x", "--workers", "2", "--upstream", "[::1]:9000", "--upstream", "::2"
    )
    assert result.returncode == 0, result.stderr
    assert "server [::1]:9000 max_fails" in result.stdout
    assert "server [::2]:8069 max_fails" in result.stdout
    assert "server [::1]:8072 max_fails" in result.stdout  # gevent_port on each host
    assert "non_idempotent" not in result.stdout
