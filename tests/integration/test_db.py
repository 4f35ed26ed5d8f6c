"""The database layer against a real PostgreSQL: the machine's (PREFORK_TEST_DSN) or the
session's embedded one, and prefork's own embedded server where the test is about it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from prefork.db import roles
from prefork.db.pool import PostgresDatabase
from prefork.db.roles import host_name
from prefork.db.schema import VERSION, migrate_postgres
from prefork.db.transaction import RequestTransaction
from tests.integration.conftest import MODES, PREFORK, ROOT, Server, ServerFactory, embedded_down
from tests.integration.conftest import pg_ctl as _pg_ctl

APP = ("--app", "tests.apps.dbapp:app")


def get(server: Server, path: str, timeout: float = 10.0) -> tuple[int, str]:
    conn = server.http(timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def backends(dsn: str, pattern: str = "prefork%") -> list[str]:
    """The application_name of each session on dsn's database that matches `pattern`."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT application_name FROM pg_stat_activity WHERE "
            "datname = current_database() AND application_name LIKE %s",
            (pattern,),
        ).fetchall()
    return [row[0] for row in rows]


def worker_pids(server: Server) -> set[int]:
    master = psutil.Process(server.proc.pid)
    return {p.pid for p in master.children() if "http worker" in " ".join(p.cmdline())}


@pytest.fixture(params=list(MODES))
def db_server(request: pytest.FixtureRequest, server_factory: ServerFactory) -> Server:
    server: Server = server_factory.start(*APP, *MODES[request.param])
    assert get(server, "/setup") == (200, "ready")
    return server


# -- the request's transaction ------------------------------------------------------------


def test_a_request_commits_when_it_succeeds_and_rolls_back_when_it_fails(db_server: Server) -> None:
    ok, failed, five, four = (uuid.uuid4().hex for _ in range(4))
    assert get(db_server, f"/insert?value={ok}") == (200, f"inserted {ok}")
    assert get(db_server, f"/insert?value={failed}&fail=1")[0] == 500
    assert get(db_server, f"/insert?value={five}&status=503+Busy")[0] == 503
    assert get(db_server, f"/insert?value={four}&status=404+Not+Found")[0] == 404
    counts = {v: get(db_server, f"/count?value={v}")[1] for v in (ok, failed, five, four)}
    assert counts == {ok: "1", failed: "0", five: "0", four: "1"}


def test_a_streamed_body_commits_at_its_end_and_rolls_back_when_it_breaks(
    db_server: Server,
) -> None:
    ok, broken = uuid.uuid4().hex, uuid.uuid4().hex
    assert get(db_server, f"/stream?value={ok}") == (200, "first second last")
    with pytest.raises(Exception):  # noqa: B017 - the body breaks off: any client error
        get(db_server, f"/stream?value={broken}&fail=1")
    assert get(db_server, f"/count?value={ok}") == (200, "1")
    assert get(db_server, f"/count?value={broken}") == (200, "0")


def test_retry_runs_again_after_a_serialization_failure(database_uri: str) -> None:
    table = f"retry_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_uri, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (n integer)")
        conn.execute(f"INSERT INTO {table} VALUES (0)")
    database = PostgresDatabase(database_uri, maxconn=2, timeout=5)
    attempts = []
    barrier = threading.Barrier(2)

    def increment(conn: Any) -> None:
        attempts.append(1)
        conn.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        value = conn.execute(f"SELECT n FROM {table}").fetchone()[0]
        if len(attempts) <= 2:
            barrier.wait(5)  # both have read: one of the two writes must fail
        conn.execute(f"UPDATE {table} SET n = %s", (value + 1,))

    def run() -> None:
        tx = RequestTransaction(database)
        tx.retry(increment)
        tx.end(commit=True)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    with psycopg.connect(database_uri, autocommit=True) as conn:
        assert conn.execute(f"SELECT n FROM {table}").fetchone() == (2,)
        conn.execute(f"DROP TABLE {table}")
    assert len(attempts) == 3  # one of the two ran again
    database.close()
    used = RequestTransaction(PostgresDatabase(database_uri, maxconn=1, timeout=5))
    used.execute("SELECT 1")
    with pytest.raises(RuntimeError, match="before any other use"):
        used.retry(lambda conn: None)
    used.end(commit=False)


# -- pools -------------------------------------------------------------------------------


def test_the_pool_limit_holds_under_concurrent_load(
    server_factory: ServerFactory, fresh_database: str
) -> None:
    server = server_factory.start(
        *APP,
        "--http-threads",
        "8",
        "--db_maxconn",
        "3",
        "--db-pool-timeout",
        "20",
        "--db-uri",
        fresh_database,
    )
    name = f"prefork threaded {host_name()}"
    results: list[tuple[int, str]] = []
    clients = [
        threading.Thread(target=lambda: results.append(get(server, "/hold?s=0.3")))
        for _ in range(16)
    ]
    for client in clients:
        client.start()
    seen = 0
    while any(client.is_alive() for client in clients):
        seen = max(seen, len(backends(fresh_database, name)))
        time.sleep(0.02)
    assert results == [(200, "held")] * 16
    assert seen == 3  # the 16 requests shared exactly db_maxconn connections


def test_a_worker_never_opens_more_than_db_maxconn(
    server_factory: ServerFactory, fresh_database: str
) -> None:
    server = server_factory.start(
        *APP,
        "--workers",
        "1",
        "--db_maxconn",
        "1",
        "--db-pool-timeout",
        "0.5",
        "--db-uri",
        fresh_database,
    )
    status, body = get(server, "/two")
    assert status == 503 and "database is unavailable" in body
    assert len(backends(fresh_database, "prefork http %")) == 1
    assert get(server, "/whoami")[0] == 200  # the worker is fine and serves on


def test_every_connection_names_its_role_and_host(
    server_factory: ServerFactory, fresh_database: str
) -> None:
    """application_name is "prefork <role> <host>" on every process's connections, and a
    request's session has the keepalives and the timeouts of its bound (limit_time_real)."""
    server = server_factory.start(
        *APP,
        "--workers",
        "1",
        "--max-cron-threads",
        "1",
        "--limit-time-real",
        "50",
        "--db-uri",
        fresh_database,
    )
    status, body = get(server, "/whoami")
    assert status == 200
    info = json.loads(body)
    assert info["application_name"] == f"prefork http {host_name()}"
    assert (info["statement_timeout"], info["idle_in_transaction_session_timeout"]) == (
        "1min",
        "1min",
    )  # 50 s + the 10 s grace
    # On a Unix socket (the embedded server) PostgreSQL reports keepalives as 0.
    assert info["tcp_keepalives_idle"] == ("10" if info["tcp"] else "0")
    deadline = time.monotonic() + 15
    expected = {f"prefork {role} {host_name()}" for role in ("http", "cron", "realtime")}
    while set(backends(fresh_database)) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    assert set(backends(fresh_database)) == expected
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        names = conn.execute(
            "SELECT application_name FROM pg_stat_activity WHERE datname = "
            "current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    assert {name for (name,) in names} == expected  # nobody unnamed


def test_no_database_connection_crosses_a_fork(
    server_factory: ServerFactory, fresh_database: str
) -> None:
    server = server_factory.start(
        *APP, "--workers", "2", "--preload-app", "--db-uri", fresh_database
    )
    deadline = time.monotonic() + 10
    seen: dict[int, dict[str, Any]] = {}
    while len(seen) < 2 and time.monotonic() < deadline:
        status, body = get(server, "/whoami")
        assert status == 200
        info = json.loads(body)
        seen[info["pid"]] = info
    assert set(seen) == worker_pids(server)
    assert len({info["backend"] for info in seen.values()}) == 2  # each worker its own
    assert {info["application_name"] for info in seen.values()} == {f"prefork http {host_name()}"}
    master = server.proc.pid
    assert backends(fresh_database, "prefork master %") == []  # closed before the forks
    sockets = {pid: _socket_inodes(pid) for pid in [master, *seen]}
    listeners = sockets[master] & set[str].intersection(*(sockets[pid] for pid in seen))
    for pid in seen:  # besides the listening socket, a worker shares nothing with others
        others = set().union(*(s for p, s in sockets.items() if p != pid))
        assert sockets[pid] & others <= listeners


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            inodes.add(target)
    return inodes


# -- SQLite ------------------------------------------------------------------------------


def test_sqlite_serves_threaded_mode(server_factory: ServerFactory, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/app.sqlite3"  # four slashes: an absolute path
    server = server_factory.start(*APP, "--db-uri", uri)
    assert get(server, "/setup") == (200, "ready")
    assert get(server, "/insert?value=a")[0] == 200
    assert get(server, "/insert?value=a&fail=1")[0] == 500
    assert get(server, "/count?value=a") == (200, "1")
    assert (tmp_path / "app.sqlite3").exists()


SQLITE_REFUSED = (
    "multi-processing mode (workers > 0) requires PostgreSQL; SQLite cannot "
    "serve concurrent writes from several processes"
)


@pytest.mark.parametrize("command", ["run", "check"])
def test_sqlite_is_refused_in_multiprocessing_mode(command: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            PREFORK,
            command,
            "--workers",
            "2",
            "-p",
            "0",
            "--db-uri",
            f"sqlite:///{tmp_path}/x.sqlite3",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr == f"prefork: error: {SQLITE_REFUSED}\n"


# -- faults ------------------------------------------------------------------------------


def test_an_unreachable_database_at_start_fails_after_a_bounded_wait(
    server_factory: ServerFactory,
) -> None:
    started = time.monotonic()
    server = server_factory.start(
        *APP,
        "--workers",
        "2",
        "--db-uri",
        "postgresql://postgres@127.0.0.1:9/test",
        "--db-connect-timeout",
        "2",
        wait=False,
    )
    assert server.proc.wait(30) == 2
    assert 2 <= time.monotonic() - started < 20
    log = server.log()
    assert re.search(
        r"ERROR prefork: cannot connect to PostgreSQL at 127\.0\.0\.1:9, database "
        r"test, user postgres \(waited 2 s\): .*Connection refused",
        log,
    ), log
    assert "Traceback" not in log


def test_embedded_postgres_survives_a_restart_and_keeps_its_data(
    embedded_data: Path, server_factory: ServerFactory
) -> None:
    """No db_* option: prefork starts PostgreSQL itself. Stopped under the running server
    (and kept from starting), requests get 503 and the workers stay; once it can start,
    the master starts it again and service resumes by itself."""
    embedded = {"PREFORK_DB_URI": ""}
    data = ("--data-dir", str(embedded_data))
    server = server_factory.start(*APP, "--workers", "2", *data, env=embedded)
    assert "embedded PostgreSQL running (data " in server.log()
    assert get(server, "/setup")[0] == 200
    assert get(server, "/insert?value=kept")[0] == 200
    assert _eventually(lambda: len(worker_pids(server)) == 2)
    pids = worker_pids(server)
    pgdata = embedded_data / "postgres"

    # A restart between two requests: each worker's pooled connection is dead, and is
    # replaced at checkout, so the next requests succeed at once.
    assert _eventually(
        lambda: {json.loads(get(server, "/whoami")[1])["pid"] for _ in range(10)} == pids
    )
    _pg_ctl(pgdata, "-w", "-m", "fast", "restart")
    assert [get(server, "/count?value=kept") for _ in range(10)] == [(200, "1")] * 10

    # Stopped: 503 and the workers stay; back: service resumes by itself.
    with embedded_down(pgdata):
        status, body = get(server, "/count?value=kept")
        assert status == 503 and "database is unavailable" in body
        status, body = get(server, "/web/health?db_server_status=1")
        assert (status, json.loads(body)) == (500, {"status": "fail", "db_server_status": False})
        assert get(server, "/web/health") == (200, '{"status": "pass"}')
        assert worker_pids(server) == pids
        # A cron worker started while the database is away waits for it (no crash, no give-up).
        cron = [
            p
            for p in psutil.Process(server.proc.pid).children()
            if "cron worker #1" in " ".join(p.cmdline())
        ]
        os.kill(cron[0].pid, signal.SIGKILL)
        server.wait_log(r"spawned cron worker #1 pid=(?!" + str(cron[0].pid) + r"\b)\d+")
        server.wait_log(r"cron worker #1: database unavailable, retrying")
        server.wait_log(
            r"the embedded PostgreSQL did not start: .*FATAL: +data directory "
            r".* has invalid permissions; starting it again in \d+ s",
            timeout=30,
        )

    assert _eventually(lambda: get(server, "/count?value=kept") == (200, "1"), 90)
    assert worker_pids(server) == pids
    status, body = get(server, "/web/health?db_server_status=1")
    assert (status, json.loads(body)) == (200, {"status": "pass", "db_server_status": True})

    assert server.stop() == 0
    assert "embedded PostgreSQL stopped" in server.log()
    assert not (pgdata / "postmaster.pid").exists()
    again = server_factory.start(*APP, "--workers", "1", *data, env=embedded)
    assert get(again, "/count?value=kept") == (200, "1")  # the data was reused


def _eventually(predicate: Any, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


# -- schema ------------------------------------------------------------------------------


def test_masters_starting_at_once_migrate_once(
    fresh_database: str, server_factory: ServerFactory
) -> None:
    servers = [server_factory.start(*APP, "--db-uri", fresh_database, wait=False) for _ in range(3)]
    for server in servers:
        server.wait_log(r"HTTP service running on")
    with psycopg.connect(fresh_database) as conn:
        rows = conn.execute("SELECT version FROM prefork.schema_version").fetchall()
    assert rows == [(version,) for version in range(1, VERSION + 1)]
    migrated = [s for s in servers if "prefork schema migrated from version 0" in s.log()]
    assert len(migrated) == 1


def test_migration_is_idempotent_under_concurrency(fresh_database: str) -> None:
    errors: list[BaseException] = []
    results: list[tuple[int, int]] = []

    def migrate() -> None:
        try:
            with psycopg.connect(fresh_database, autocommit=True) as conn:
                results.append(migrate_postgres(conn))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert sorted(results) == [(0, VERSION)] + [(VERSION, VERSION)] * 5


# -- health and check --------------------------------------------------------------------


def test_health_touches_no_database(server_factory: ServerFactory, fresh_database: str) -> None:
    server = server_factory.start(*APP, "--workers", "1", "--db-uri", fresh_database)
    for _ in range(5):
        assert get(server, "/web/health") == (200, '{"status": "pass"}')
    assert backends(fresh_database, "prefork http %") == []
    status, body = get(server, "/web/health?db_server_status=1")
    assert (status, json.loads(body)) == (200, {"status": "pass", "db_server_status": True})


@pytest.mark.usefixtures("database_uri")
def test_check_compares_the_connection_budget_with_max_connections() -> None:
    def check(*args: str) -> str:
        result = subprocess.run(
            [PREFORK, "check", "-p", "0", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=30,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    crowded = check("--workers", "4", "--max-cron-threads", "1")
    # The realtime process: its catch-up pool (db_maxconn_gevent, else 4) and the bus's two.
    assert re.search(
        r"warning: this configuration can open 327 database connections \(4 x 64 "
        r"\(http workers\) \+ 1 x 64 \(cron workers\) \+ 1 x 6 \(realtime "
        r"process\) \+ 1 x 1 \(master\) = 327\) but the server accepts \d+",
        crowded,
    ), crowded
    assert "reachable: PostgreSQL" in crowded
    modest = check("--workers", "4", "--db_maxconn", "2", "--max-cron-threads", "1")
    assert "warning: this configuration can open" not in modest
    assert "database connections: up to 4 x 2 (http workers) + 1 x 2 (cron workers)" in modest


def test_an_upgrade_keeps_the_embedded_database_running(
    embedded_data: Path, server_factory: ServerFactory
) -> None:
    """USR2: the new master reuses the embedded server; the old one leaves it running, and
    the last master to stop stops it."""
    server = server_factory.start(
        *APP, "--workers", "1", "--data-dir", str(embedded_data), env={"PREFORK_DB_URI": ""}
    )
    assert get(server, "/setup")[0] == 200
    old_master = server.proc.pid
    server.signal(signal.SIGUSR2)
    server.wait_log(r"upgrade: workers ready, asking the old master", timeout=30)
    assert server.proc.wait(30) == 0  # the old master has handed over and left
    assert "embedded PostgreSQL stopped" not in server.log()
    assert get(server, "/insert?value=upgraded")[0] == 200
    assert get(server, "/count?value=upgraded") == (200, "1")
    new_master = int(
        re.findall(r"(\d+) INFO prefork\.master: upgrade: workers ready", server.log())[-1]
    )
    assert new_master != old_master
    os.kill(new_master, signal.SIGTERM)
    pidfile = embedded_data / "postgres" / "postmaster.pid"
    assert _eventually(lambda: not pidfile.exists())


def test_a_role_connection_has_its_settings_and_keeps_a_users_name(database_uri: str) -> None:
    with roles.connect(database_uri, roles.CRON, 20, autocommit=True) as conn:
        row = conn.execute(
            "SELECT current_setting('application_name'), "
            "current_setting('statement_timeout'), "
            "current_setting('idle_in_transaction_session_timeout'), "
            "current_setting('tcp_keepalives_count'), "
            "inet_client_addr() IS NOT NULL"
        ).fetchone()
    assert row is not None
    assert row[:3] == (f"prefork cron {host_name()}", "30s", "30s")
    assert row[3] == ("3" if row[4] else "0")
    named = make_conninfo(database_uri, application_name="erp-frontend")
    with roles.connect(named, roles.HTTP) as conn:
        # Not autocommit, and left with no transaction open all the same (a pool needs it).
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        row = conn.execute(
            "SELECT current_setting('application_name'), current_setting('statement_timeout')"
        ).fetchone()
    assert row == ("erp-frontend", "0")  # unbounded: no timeout
