"""The embedded PostgreSQL when prefork runs as root: it runs as an unprivileged user that the
log names, and no directory outside data_dir changes mode or owner (pgserver's own way
chmods every parent of the data and of its binaries). The root tests start `prefork run`
through its console script; they are skipped unless the tests run as root."""

from __future__ import annotations

import logging
import os
import pwd
import re
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import psycopg
import pytest

from prefork.db.embedded import EmbeddedPostgres
from prefork.db.embedded_user import DEFAULT_USER
from tests.integration.conftest import AS_ROOT, PREFORK, READY_RE, delete_user

as_root = pytest.mark.skipif(not AS_ROOT, reason="about running as root")


def ancestry(*paths: Path) -> dict[Path, tuple[int, int, int]]:
    """Mode, owner and group of each path and all its ancestors."""
    chain = {p for path in paths for p in (path, *path.parents)}
    return {p: (p.stat().st_mode, p.stat().st_uid, p.stat().st_gid) for p in sorted(chain)}


def bin_dir() -> Path:
    from prefork.db.embedded import _import_pgserver

    return Path(_import_pgserver()._commands.POSTGRES_BIN_PATH)


class Run:
    """`prefork run` in threaded mode with the embedded database, its output in a file."""

    def __init__(self, cwd: Path, data_dir: Path) -> None:
        self.log_path = cwd / f"prefork-{time.monotonic_ns()}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFORK_")}
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    PREFORK,
                    "run",
                    "--http-interface",
                    "127.0.0.1",
                    "-p",
                    "0",
                    "--gevent-port",
                    "0",
                    "--data-dir",
                    str(data_dir),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not READY_RE.search(self.log()):
            assert self.proc.poll() is None and time.monotonic() < deadline, self.log()
            time.sleep(0.05)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


def postmaster_uid(pgdata: Path) -> int:
    pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    return psutil.Process(pid).uids().real


@as_root
def test_as_root_it_runs_as_the_clusters_owner_and_changes_no_parent(
    base: Path, embedded_user: str
) -> None:
    """data_dir below a 0711 directory (searchable, not readable, as a home often is):
    the server runs as the owner of data_dir/postgres, which the log names, and neither the
    parents of data_dir nor those of the binaries change; the next start reuses the data."""
    home = base / "home"
    home.mkdir(mode=0o711)
    home.chmod(0o711)
    data_dir = home / "srv" / "data"
    pgdata = data_dir / "postgres"
    pgdata.mkdir(parents=True, mode=0o700)
    entry = pwd.getpwnam(embedded_user)
    os.chown(pgdata, entry.pw_uid, entry.pw_gid)
    before = ancestry(data_dir, bin_dir())

    for _ in range(2):  # created, then reused
        run = Run(base, data_dir)
        try:
            run.wait_ready()
            log = run.log()
            assert (
                f"running as root: the embedded PostgreSQL runs as user '{embedded_user}' "
                f"(uid {entry.pw_uid})"
            ) in log
            assert "created the system user" not in log
            assert re.search(
                r"database: embedded PostgreSQL at socket " + re.escape(str(pgdata)), log
            ), log
            assert postmaster_uid(pgdata) == entry.pw_uid
            assert (pgdata.stat().st_uid, pgdata.stat().st_mode & 0o777) == (entry.pw_uid, 0o700)
            assert ancestry(data_dir, bin_dir()) == before
        finally:
            assert run.stop() == 0
        assert "embedded PostgreSQL stopped" in run.log()
        assert not (pgdata / "postmaster.pid").exists()
        assert ancestry(data_dir, bin_dir()) == before
        assert "Traceback" not in run.log()


@as_root
def test_as_root_a_parent_it_cannot_search_is_refused_in_one_line(base: Path) -> None:
    """data_dir below a 0700 directory: exit 2 with one line that names the directory and
    what to do; no mode changes, and prefork's user is not created for nothing."""
    locked = base / "locked"
    locked.mkdir(mode=0o700)
    data_dir = locked / "data"
    had_user = _exists(DEFAULT_USER)
    before = ancestry(locked, bin_dir())
    run = Run(base, data_dir)
    assert run.proc.wait(60) == 2
    log = run.log()
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert errors == [log.splitlines()[-1]], log
    assert re.search(
        rf"ERROR prefork: cannot start the embedded PostgreSQL as root: data_dir {data_dir}: "
        rf"{locked} \(mode 0700, owner root\) is not searchable by user '{DEFAULT_USER}', and "
        r"prefork changes no directory outside data_dir; choose a data_dir outside it, run "
        r"prefork as an unprivileged user, or set db_host/db_uri to a PostgreSQL server$",
        errors[0],
    ), log
    assert "Traceback" not in log
    assert ancestry(locked, bin_dir()) == before
    assert _exists(DEFAULT_USER) == had_user
    assert not (data_dir / "postgres").exists()


@as_root
def test_as_root_the_user_is_created_once_and_the_log_says_so(
    base: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A user that does not exist is created as a system user without login shell or home,
    logged; the next start finds it (and the cluster's owner) and creates nothing."""
    name = f"pf-new-{uuid.uuid4().hex[:8]}"
    caplog.set_level(logging.INFO, logger="prefork.db")
    try:
        for attempt in range(2):
            caplog.clear()
            embedded = EmbeddedPostgres(str(base / "data"), root_user=name)
            try:
                uri = embedded.start()
                with psycopg.connect(uri) as conn:
                    assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
            finally:
                embedded.stop()
            created = (
                f"created the system user '{name}' (no login shell, no home) to run "
                "the embedded PostgreSQL"
            )
            assert (created in caplog.messages) == (attempt == 0), caplog.messages
            entry = pwd.getpwnam(name)
            assert (
                f"running as root: the embedded PostgreSQL runs as user '{name}' "
                f"(uid {entry.pw_uid})" in caplog.messages
            )
            assert (entry.pw_shell.endswith("nologin"), entry.pw_dir) == (True, "/nonexistent")
            assert not Path("/nonexistent").exists()
            assert (base / "data" / "postgres").stat().st_uid == entry.pw_uid
    finally:
        delete_user(name)
    assert not _exists(name)


@as_root
def test_as_root_a_data_dir_too_long_for_a_socket_gets_its_own_socket_directory(
    base: Path, embedded_user: str
) -> None:
    """A socket address holds 107 bytes: beyond, the socket goes to a new directory of the
    server's user in the temporary directory, removed when the server stops."""
    data_dir = base / ("x" * 90)
    pgdata = data_dir / "postgres"
    pgdata.mkdir(parents=True, mode=0o700)
    entry = pwd.getpwnam(embedded_user)
    os.chown(pgdata, entry.pw_uid, entry.pw_gid)
    before = ancestry(data_dir, Path(tempfile.gettempdir()))
    embedded = EmbeddedPostgres(str(data_dir))
    try:
        uri = embedded.start()
        socket_dir = Path((pgdata / "postmaster.pid").read_text().splitlines()[4])
        assert socket_dir.parent == Path(tempfile.gettempdir())
        assert socket_dir.name.startswith("prefork-pg-")
        st = socket_dir.stat()
        assert (st.st_uid, st.st_mode & 0o777) == (entry.pw_uid, 0o700)
        with psycopg.connect(uri) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        embedded.stop()
    assert not socket_dir.exists()
    assert ancestry(data_dir, Path(tempfile.gettempdir())) == before


def _exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


# -- which directories a user can search: mode bits, the way the kernel reads them ----------
