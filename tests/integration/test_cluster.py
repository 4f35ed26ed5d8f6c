"""The host registry: servers on one database know each other, and say when sessions cannot
follow a user between them or when together they can open more connections than PostgreSQL
accepts. Two servers on loopback (different ports) are two hosts here."""

from __future__ import annotations

import base64
import json
import re
import shutil
import signal
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

from prefork.db.roles import host_name
from tests.integration.conftest import PREFORK, ROOT, Server, ServerFactory, free_port

APP = ("--app", "tests.apps.dbapp:app", "--workers", "1", "--max-cron-threads", "0")
SECRET = "correct horse battery staple"
BASE = Path(tempfile.mkdtemp(prefix="prefork-test-cluster-"))  # emptied at exit


@pytest.fixture(autouse=True, scope="module")
def _remove_base() -> Iterator[None]:
    yield
    shutil.rmtree(BASE, ignore_errors=True)


def hosts(dsn: str) -> dict[int, dict[str, Any]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(
            "SELECT http_port, pid, session_store, session_key, connections FROM prefork.host"
        )
        columns = [c.name for c in cursor.description or ()]
        return {row[0]: dict(zip(columns, row, strict=True)) for row in cursor}


def prefork(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PREFORK, *args], capture_output=True, text=True, cwd=ROOT, timeout=60)


def start(
    server_factory: ServerFactory,
    dsn: str,
    port: int,
    *args: str,
    env: dict[str, str] | None = None,
) -> Server:
    """A server of its own data_dir (a host), on `port`."""
    server: Server = server_factory.start(
        *APP, "-p", str(port), "--db-uri", dsn, "--data-dir", data_dir(port), *args, env=env
    )
    return server


def data_dir(port: int) -> str:
    return str(BASE / f"host-{port}")


def kill_host(server: Server) -> None:
    """SIGKILL of the master and all its processes, as when a machine vanishes."""
    processes = [
        psutil.Process(server.proc.pid),
        *psutil.Process(server.proc.pid).children(recursive=True),
    ]
    for process in processes:
        process.send_signal(signal.SIGKILL)
    psutil.wait_procs(processes, timeout=10)


def test_file_sessions_on_two_hosts_are_reported_everywhere(
    server_factory: ServerFactory, fresh_database: str
) -> None:
    first_port, second_port = free_port(), free_port()
    first = start(server_factory, fresh_database, first_port, "--admin-passwd", "pw")
    assert set(hosts(fresh_database)) == {first_port}  # written at start
    second = start(server_factory, fresh_database, second_port)
    warning = (
        rf"WARNING prefork.cluster: cluster: 1 other host\(s\) share this database "
        rf"\({host_name()}:{{port}}\) but session_store = file keeps this host's "
        "sessions to itself"
    )
    second.wait_log(warning.format(port=first_port))
    first.wait_log(warning.format(port=second_port), timeout=30)  # at its next beat

    status = prefork(
        "status",
        "-p",
        str(second_port),
        "--db-uri",
        fresh_database,
        "--data-dir",
        data_dir(second_port),
    )
    assert status.returncode == 0, status.stderr
    assert f"{host_name()}:{first_port}" in status.stdout
    assert f"{host_name()}:{second_port}" in status.stdout
    assert "WARNING cluster: 1 other host(s)" in status.stdout

    api = urllib.request.Request(
        f"http://127.0.0.1:{first_port}/prefork/api",
        headers={"Authorization": "Basic " + base64.b64encode(b"admin:pw").decode()},
    )
    data = json.loads(urllib.request.urlopen(api, timeout=10).read())
    assert {h["http_port"] for h in data["cluster"]["hosts"]} == {first_port, second_port}
    assert any("session_store = file" in w for w in data["cluster"]["warnings"])

    second.stop()  # a graceful stop leaves the registry
    assert set(hosts(fresh_database)) == {first_port}


def test_redis_sessions_need_one_secret_compared_by_fingerprint(
    server_factory: ServerFactory, fresh_database: str, tmp_path: Any
) -> None:
    redis = ("--session-store", "redis://127.0.0.1:6379/14")
    first_port, second_port = free_port(), free_port()
    first = start(server_factory, fresh_database, first_port, *redis, "--session-secret", SECRET)
    # The second's secret comes from its service's environment, as the guide suggests.
    second = start(
        server_factory,
        fresh_database,
        second_port,
        *redis,
        env={"PREFORK_SESSION_SECRET": SECRET + "!"},
    )
    second.wait_log(
        r"cluster: 1 other host\(s\) share this database .* sign\(s\) session "
        r"cookies with a different or no session_secret \(the fingerprints differ\)"
    )
    # prefork status, from a shell without that environment, judges by what the running
    # server wrote in the registry, not by its own settings.
    status = prefork(
        "status",
        "-p",
        str(second_port),
        "--db-uri",
        fresh_database,
        *redis,
        "--data-dir",
        data_dir(second_port),
    )
    assert "the fingerprints differ" in status.stdout, status.stdout
    assert "session_secret is not set here" not in status.stdout
    rows = hosts(fresh_database)
    assert rows[first_port]["session_key"] != rows[second_port]["session_key"]
    assert all(len(row["session_key"]) == 16 for row in rows.values())

    # A third configuration, checked before it starts: same Redis, same secret as the first.
    same = prefork(
        "check",
        "-p",
        str(free_port()),
        "--db-uri",
        fresh_database,
        *redis,
        "--session-secret",
        SECRET,
        "--data-dir",
        str(tmp_path / "third"),
    )
    members = re.search(r"other live hosts on this database: (.*)", same.stdout)
    assert members is not None, same.stdout
    assert set(members.group(1).split(", ")) == {
        f"{host_name()}:{first_port}",
        f"{host_name()}:{second_port}",
    }
    assert "the fingerprints differ" in same.stdout  # the second host's, not the first's
    unset = prefork(
        "check",
        "-p",
        str(free_port()),
        "--db-uri",
        fresh_database,
        *redis,
        "--data-dir",
        str(tmp_path / "third"),
    )
    assert "session_secret is not set here" in unset.stdout
    for output in (
        first.log(),
        second.log(),
        same.stdout + same.stderr,
        unset.stdout + unset.stderr,
        status.stdout,
    ):
        assert SECRET not in output and "staple" not in output


def test_the_clusters_connection_budget_is_counted_across_hosts(
    server_factory: ServerFactory, fresh_database: str, tmp_path: Any
) -> None:
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        row = conn.execute(
            "SELECT current_setting('max_connections')::int - "
            "current_setting('superuser_reserved_connections')::int"
        ).fetchone()
    assert row is not None
    available = int(row[0])
    # Each host alone fits: 1 worker x N + 4 + 2 (realtime) + 1 (master) = N + 7.
    each = available // 2 + 1 - 7
    first_port = free_port()
    start(server_factory, fresh_database, first_port, "--db_maxconn", str(each))
    check = prefork(
        "check",
        "-p",
        str(free_port()),
        "--db-uri",
        fresh_database,
        "--db_maxconn",
        str(each),
        *APP[2:],
        "--data-dir",
        str(tmp_path / "b"),
    )
    assert "warning: this configuration can open" not in check.stdout  # alone it fits
    assert (
        f"the 2 hosts on this database can open {2 * (each + 7)} connections together"
        in check.stdout
    ), check.stdout
    assert f"but the server accepts {available}" in check.stdout


def test_a_killed_host_goes_stale_and_stops_counting(
    server_factory: ServerFactory, fresh_database: str
) -> None:
    first_port, second_port = free_port(), free_port()
    kill_host(start(server_factory, fresh_database, first_port))
    with psycopg.connect(fresh_database, autocommit=True) as conn:  # as if 2 minutes ago
        conn.execute("UPDATE prefork.host SET heartbeat = now() - interval '2 minutes'")
    start(server_factory, fresh_database, second_port)
    status = prefork(
        "status",
        "-p",
        str(second_port),
        "--db-uri",
        fresh_database,
        "--data-dir",
        data_dir(second_port),
    )
    assert f"{host_name()}:{first_port}" in status.stdout and "(gone)" in status.stdout
    assert "WARNING cluster" not in status.stdout  # a gone host is not a member
    check = prefork(
        "check",
        "-p",
        str(second_port),
        "--db-uri",
        fresh_database,
        "--data-dir",
        data_dir(second_port),
    )
    assert "other live hosts on this database: none" in check.stdout
