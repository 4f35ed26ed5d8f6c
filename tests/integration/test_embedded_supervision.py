"""The master supervises the embedded PostgreSQL it started: killed with SIGKILL (which
leaves postmaster.pid behind), it is started again with back-off, the death and the start
logged and alerted, and the workers' requests succeed again by themselves."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import psutil

from prefork.db.embedded import EmbeddedPostgres
from tests.integration.conftest import PREFORK, ROOT, Server, ServerFactory
from tests.integration.test_db import APP, _eventually, get
from tests.integration.test_health import Receiver, receiver  # noqa: F401  (the fixture)

# Bounded waits: a start after SIGKILL replays the WAL; the back-off's first delay is 1 s.
RECOVERY = 60.0


def postmaster_pid(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().splitlines()[0])


def wait_log(server: Server, pattern: str) -> re.Match[str]:
    """The log line, also from a new master once the first one has left (USR2)."""
    deadline = time.monotonic() + RECOVERY
    while not (match := re.search(pattern, server.log())):
        assert time.monotonic() < deadline, f"log never matched {pattern!r}:\n{server.log()}"
        time.sleep(0.05)
    return match


def kill_postmaster(server: Server, pgdata: Path) -> int:
    pid = postmaster_pid(pgdata)
    os.kill(pid, signal.SIGKILL)
    wait_log(
        server,
        rf"ERROR prefork\.db: embedded PostgreSQL \(pid {pid}\) died: its "
        r"process is gone and postmaster\.pid stayed",
    )
    return pid


def status(tmp_path: Path, data_dir: Path) -> str:
    return subprocess.run(
        [PREFORK, "status", "-p", "0", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    ).stdout


def test_a_killed_embedded_postgres_is_started_again_with_back_off(
    embedded_data: Path,
    server_factory: ServerFactory,
    receiver: Receiver,  # noqa: F811
    tmp_path: Path,
) -> None:
    receiver.failures_left = 0
    url = f"http://127.0.0.1:{receiver.server_port}/hook"
    server: Server = server_factory.start(
        *APP,
        "--workers",
        "2",
        "--data-dir",
        str(embedded_data),
        "--alert-webhook",
        url,
        env={"PREFORK_DB_URI": ""},
    )
    pgdata = embedded_data / "postgres"
    assert get(server, "/setup")[0] == 200
    assert get(server, "/insert?value=kept")[0] == 200

    first = kill_postmaster(server, pgdata)
    log_path = re.escape(str(pgdata / "log"))
    server.wait_log(r"starting it again in 1 s \(its log: " + log_path + r"\)")
    server.wait_log(
        r"WARNING prefork\.db: embedded PostgreSQL started again \(pid (\d+); 1 "
        r"restart\(s\)",
        timeout=RECOVERY,
    )
    assert postmaster_pid(pgdata) != first
    assert _eventually(lambda: get(server, "/count?value=kept") == (200, "1"), RECOVERY)
    assert _eventually(lambda: [p["event"] for p in receiver.payloads] == ["raised", "cleared"])
    raised = receiver.payloads[0]
    assert raised["kind"] == "database-down" and f"(pid {first}) died" in raised["reason"]
    assert _eventually(lambda: "embedded PostgreSQL: running" in status(tmp_path, embedded_data))
    assert "restarted 1 time(s)" in status(tmp_path, embedded_data)

    # Killed again soon after: the next start waits twice as long.
    kill_postmaster(server, pgdata)
    server.wait_log(r"starting it again in 2 s")
    server.wait_log(r"2 restart\(s\) since the master started", timeout=RECOVERY)
    assert _eventually(lambda: get(server, "/count?value=kept") == (200, "1"), RECOVERY)

    # SIGTERM stops the server and the embedded PostgreSQL with it.
    assert server.stop(RECOVERY) == 0
    assert "embedded PostgreSQL stopped" in server.log()
    assert not (pgdata / "postmaster.pid").exists()
    assert "Traceback" not in server.log()


def test_a_database_prefork_did_not_start_is_not_supervised(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """db_uri (the session's server): the state shows no embedded server to watch."""
    server: Server = server_factory.start(*APP, "--workers", "1")
    assert get(server, "/setup")[0] == 200
    state = json.loads(
        subprocess.run(
            [PREFORK, "status", "--json", "-p", "0", "--data-dir", str(tmp_path / "data")],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=30,
        ).stdout
    )
    assert state["database"] == {}
    assert "embedded PostgreSQL" not in server.log()


def test_after_an_upgrade_the_new_master_supervises(
    embedded_data: Path, server_factory: ServerFactory
) -> None:
    """USR2: the old master leaves the server running and stops watching it; the new
    master, which found it running, starts it again when it dies."""
    server: Server = server_factory.start(
        *APP, "--workers", "1", "--data-dir", str(embedded_data), env={"PREFORK_DB_URI": ""}
    )
    pgdata = embedded_data / "postgres"
    assert get(server, "/setup")[0] == 200
    server.signal(signal.SIGUSR2)
    server.wait_log(r"upgrade: workers ready, asking the old master", timeout=30)
    assert server.proc.wait(30) == 0
    new_master = int(
        re.findall(r"(\d+) INFO prefork\.master: upgrade: workers ready", server.log())[-1]
    )
    try:
        kill_postmaster(server, pgdata)
        started = wait_log(
            server,
            r"(\d+) WARNING prefork\.db: embedded PostgreSQL started "
            r"again",
        )
        assert int(started.group(1)) == new_master
        assert _eventually(lambda: get(server, "/count?value=x") == (200, "0"), RECOVERY)
    finally:
        os.kill(new_master, signal.SIGTERM)
    assert _eventually(lambda: not (pgdata / "postmaster.pid").exists(), RECOVERY)


# -- the supervisor's decisions, with a stand-in for the server -----------------------------


def test_lock_files_naming_a_zombie_are_removed_and_others_kept(tmp_path: Path) -> None:
    """A killed postmaster not reaped yet is a zombie, which PostgreSQL takes for a running
    server (kill(pid, 0) succeeds): its lock files would refuse every start."""
    embedded = EmbeddedPostgres(str(tmp_path))
    embedded.pgdata.mkdir()
    zombie = subprocess.Popen(["true"])
    try:
        assert _eventually(lambda: psutil.Process(zombie.pid).status() == psutil.STATUS_ZOMBIE)
        pidfile, socket_lock = embedded.pgdata / "postmaster.pid", tmp_path / ".s.PGSQL.5432.lock"
        for lock in (pidfile, socket_lock):
            lock.write_text(f"{zombie.pid}\n{embedded.pgdata}\n")
        assert embedded.postmaster_pid() is None
        embedded._remove_stale_locks(tmp_path)
        assert not pidfile.exists() and not socket_lock.exists()
    finally:
        zombie.wait()
    pidfile.write_text(f"{os.getpid()}\n")  # a running process: kept
    assert embedded.postmaster_pid() == os.getpid()
    embedded._remove_stale_locks(tmp_path)
    assert pidfile.exists()
