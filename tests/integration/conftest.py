"""Fixtures that start real prefork processes and talk to them over real sockets."""

from __future__ import annotations

import contextlib
import http.client
import os
import pwd
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.responses import parse_responses as parse_responses

ROOT = Path(__file__).resolve().parents[2]
# The installed console script, as the README runs it: from the application's directory,
# without PYTHONPATH (it puts its own directory, not the working one, on sys.path).
PREFORK = str(Path(sys.executable).with_name("prefork"))
READY_RE = re.compile(r"HTTP service running on (\S+):(\d+)")
SERVER_BUGS = ("CRITICAL prefork.worker", "unexpected error in the master loop")


TEST_DSN_ENV = "PREFORK_TEST_DSN"
AS_ROOT = os.geteuid() == 0


@pytest.fixture(scope="session")
def database_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The PostgreSQL of the tests that ask for one: PREFORK_TEST_DSN, else an embedded
    server started once for the session (the way a fresh machine runs). Nothing starts it
    until a test asks, through `database_uri` (directly, or through `server_factory` or
    `fresh_database`)."""
    dsn = os.environ.get(TEST_DSN_ENV, "")
    if dsn:
        yield dsn
        return
    from prefork.db.embedded import EmbeddedPostgres

    owner = request.getfixturevalue("embedded_user")
    with embedded_data_dir(owner, tmp_path_factory.mktemp("embedded-pg")) as data_dir:
        embedded = EmbeddedPostgres(str(data_dir))
        yield embedded.start()
        embedded.stop()


@pytest.fixture
def database_uri(database_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Opts a test in to the database: while it runs, PREFORK_DB_URI names it, so every
    `prefork` the test starts finds it. A test that does not ask has no PREFORK_DB_URI."""
    monkeypatch.setenv("PREFORK_DB_URI", database_server)
    return database_server


@pytest.fixture(scope="session")
def embedded_user() -> Iterator[str | None]:
    """As root, the unprivileged user the session's embedded servers run as (PostgreSQL
    refuses root): made for the session and deleted after it, so that no test leaves
    prefork's own `prefork-postgres` behind. None when not root."""
    if not AS_ROOT:
        yield None
        return
    from prefork.db.embedded_user import ServerUser, ensure_user

    name = f"pf-test-{uuid.uuid4().hex[:8]}"
    ensure_user(ServerUser(name))
    try:
        yield name
    finally:
        delete_user(name)


def delete_user(name: str) -> None:
    subprocess.run(["userdel", name], capture_output=True, check=False)
    subprocess.run(["groupdel", name], capture_output=True, check=False)  # if userdel left it


@pytest.fixture
def embedded_data(embedded_user: str | None, tmp_path: Path) -> Iterator[Path]:
    """A data_dir for a test that starts prefork's embedded server (pass it as --data-dir).
    Ask for it before server_factory: fixtures end in reverse order, the servers first."""
    with embedded_data_dir(embedded_user, tmp_path / "data") as data_dir:
        yield data_dir


@contextmanager
def embedded_data_dir(owner: str | None, default: Path) -> Iterator[Path]:
    """`default`, unless root: then a new directory that others can search (pytest's are
    0700, and prefork refuses rather than chmod them), whose postgres/ is owned by `owner`,
    whom prefork then runs the cluster as. A server a failed test left running is stopped."""
    if owner is None:
        yield default
        return
    base = Path(tempfile.mkdtemp(prefix="prefork-test-"))
    try:
        base.chmod(0o755)
        pgdata = base / "data" / "postgres"
        pgdata.mkdir(parents=True, mode=0o700)
        pgdata.parent.chmod(0o755)
        entry = pwd.getpwnam(owner)
        os.chown(pgdata, entry.pw_uid, entry.pw_gid)
        yield pgdata.parent
    finally:
        if (base / "data" / "postgres" / "postmaster.pid").exists():
            pg_ctl(base / "data" / "postgres", "-w", "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


def pg_ctl(pgdata: Path, *args: str) -> None:
    """pg_ctl on an embedded server's data, as root as the data's owner (as prefork does)."""
    from prefork.db.embedded import _import_pgserver

    st = pgdata.stat()
    as_owner = {"user": st.st_uid, "group": st.st_gid, "extra_groups": [], "cwd": pgdata}
    _import_pgserver()._commands.pg_ctl(
        list(args), pgdata=pgdata, timeout=60, **(as_owner if AS_ROOT else {})
    )


@contextmanager
def embedded_down(pgdata: Path) -> Iterator[None]:
    """A running prefork's embedded server stopped for the block, and kept down although
    its master starts it again (PostgreSQL refuses a data directory others may write to);
    after the block, the master's next attempt starts it."""
    pgdata.chmod(0o777)
    try:
        pg_ctl(pgdata, "-w", "-m", "fast", "stop")
        yield
    finally:
        pgdata.chmod(0o700)


@pytest.fixture
def fresh_database(database_uri: str) -> Iterator[str]:
    """A new, empty database on the test server; dropped afterwards."""
    name = f"prefork_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_uri, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield _uri(make_conninfo(database_uri, dbname=name))
    with psycopg.connect(database_uri, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def _uri(conninfo: str) -> str:
    """The postgresql:// form db_uri takes, of a key=value connection string."""
    params = conninfo_to_dict(conninfo)
    host = str(params.get("host", ""))
    netloc = quote(str(params.get("user", ""))) + "@"
    query = ""
    if host.startswith("/"):
        query = "?host=" + quote(host, safe="")
    else:
        netloc += f"{host}:{params.get('port', 5432)}"
    return f"postgresql://{netloc}/{params['dbname']}{query}"


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on, chosen below the kernel's ephemeral range: a port the
    kernel handed out (bind to 0) can be taken again, between this call and the bind that
    needs it, as the local port of any outgoing connection (every database connection of
    a starting server), and the later listen then fails with EADDRINUSE."""
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randrange(10000, max(low, 10001))
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port below {low} on {host}")


def in_rounds(
    client: Callable[[], None], clients: int, done: Callable[[], bool], rounds: int = 5
) -> None:
    """`clients` threads running `client` at once, round after round, until `done()` or
    `rounds` rounds (to reach every worker, which new connections find by chance)."""
    for _ in range(rounds):
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        if done():
            break


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path
        self.host = "127.0.0.1"
        self.port = 0

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.log())
            if match:
                return match
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"log never matched {pattern!r}; log:\n{self.log()}")

    @property
    def realtime_port(self) -> int:
        """Where the realtime endpoints are: http_port in threaded mode, else the realtime
        process's port, from the master's log."""
        if "(threaded mode," in self.log():
            return self.port
        return int(
            self.wait_log(
                r"realtime service \(websocket, long-polling\) on "
                r"[\d.]+:(\d+)"
            ).group(1)
        )

    def connect(self, timeout: float = 5.0) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=timeout)

    def http(self, timeout: float = 5.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def get(self, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
        conn = self.http()
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_server(
    tmp_path: Path,
    *args: str,
    env: dict[str, str] | None = None,
    wait: bool = True,
    cwd: Path = ROOT,
    session: bool = False,
) -> Server:
    """`session`: in a session (and process group) of its own, which os.killpg reaches
    whole, master and workers, as a host would be frozen."""
    log_path = tmp_path / f"server-{time.monotonic_ns()}.log"
    command = [
        PREFORK,
        "run",
        "--http-interface",
        "127.0.0.1",
        "-p",
        "0",
        "--gevent-port",
        "0",
        "--data-dir",
        str(tmp_path / "data"),
        *args,
    ]
    full_env = {**os.environ}
    full_env.pop("PREFORK_CONFIG", None)
    full_env.pop("PYTHONPATH", None)
    full_env.update(env or {})
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=full_env,
            start_new_session=session,
        )
    server = Server(proc, log_path)
    if wait:
        match = server.wait_log(READY_RE.pattern)
        server.port = int(match.group(2))
    return server


class ServerFactory:
    """Starts the servers of one test; the fixture stops them after it."""

    def __init__(self, tmp_path: Path) -> None:
        self._tmp_path = tmp_path
        self.started: list[Server] = []

    def start(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        wait: bool = True,
        session: bool = False,
        cwd: Path = ROOT,
    ) -> Server:
        server = start_server(self._tmp_path, *args, env=env, wait=wait, session=session, cwd=cwd)
        self.started.append(server)
        return server


@pytest.fixture
def server_factory(tmp_path: Path, database_uri: str) -> Iterator[ServerFactory]:
    factory = ServerFactory(tmp_path)
    yield factory
    for server in factory.started:
        server.stop()
    for server in factory.started:  # a bug in prefork itself fails whichever test met it
        for marker in SERVER_BUGS:
            assert marker not in server.log(), f"{marker!r} in the server log:\n{server.log()}"


# The same HTTP behaviour is required of both server modes: the threaded server and a
# multi-processing worker (the same engine, dispatching inline).
MODES = {"threaded": (), "workers": ("--workers", "2")}


@pytest.fixture(params=list(MODES))
def server(request: pytest.FixtureRequest, server_factory: ServerFactory) -> Server:
    return server_factory.start("--app", "tests.apps.testapp:app", *MODES[request.param])


def exchange(
    server: Server, data: bytes, *, half_close: bool = True, timeout: float = 5.0
) -> bytes:
    """Send raw bytes, then read until the server closes (or `timeout`)."""
    with server.connect(timeout) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return read_all(sock)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture
def threaded_server(server_factory: ServerFactory) -> Server:
    """For behaviour that belongs to threaded mode only."""
    return server_factory.start("--app", "tests.apps.testapp:app")
