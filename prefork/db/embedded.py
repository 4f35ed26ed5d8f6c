"""The embedded PostgreSQL: a server from the `pgserver` package in data_dir/postgres.

The master starts it before forking, so a newcomer runs multi-processing mode with no database
installed, and stops it when it exits; the next start reuses the data. It listens on a Unix
socket only (no TCP port to collide with). pgserver's own reference counting of handles is not
used (a master killed with SIGKILL would leave its pid counted forever): prefork decides when
to stop it, and a master that hands over to a new one (USR2) or re-executes leaves it running.
While it serves, the master watches it and starts it again when it dies
(servers/embedded_supervisor.py).

As root, pgserver's get_server() is not used (it chmods every directory above the data and
its binaries, and adds a user with a login shell): prefork runs pgserver's initdb and pg_ctl
itself as an unprivileged user (embedded_user.py), with the socket in data_dir/postgres.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import psutil

from prefork.datadir import DIR_MODE, SEARCHABLE_MODE, private_dir
from prefork.db import roles
from prefork.db.embedded_user import (
    DEFAULT_USER,
    ServerUser,
    UserError,
    check_reachable,
    ensure_user,
    server_user,
)

log = logging.getLogger("prefork.db")

RESERVED_MARGIN = 10  # connections beyond the configuration's budget (psql, check, ...)
READY_TIMEOUT = 60.0  # seconds pg_ctl and the wait for postmaster.pid's "ready" may take
SOCKET_NAME = ".s.PGSQL.5432"
SOCKET_DIR_PREFIX = "prefork-pg-"  # in the temporary directory, when data_dir's path is too long
SUN_PATH_MAX = 108  # bytes in a Unix socket address, with its terminating NUL (Linux)
LOG_TAIL = 16384  # bytes of its log read back to say why it stopped or did not start


class EmbeddedError(Exception):
    """The embedded server could not be started; the message says why and where its log is."""


class EmbeddedPostgres:
    def __init__(self, data_dir: str, *, root_user: str = DEFAULT_USER) -> None:
        self.pgdata = Path(data_dir) / "postgres"
        self._root_user = root_user  # who runs it as root, unless data_dir/postgres has an owner
        self._user: ServerUser | None = None  # set when prefork runs as root
        self._socket_dir: Path | None = None  # where it listens: kept across restarts
        self._started = False

    @property
    def log_file(self) -> Path:
        return self.pgdata / "log"

    def start(self) -> str:
        """Start (or reuse) the server; returns its connection string."""
        pgserver = _import_pgserver()
        as_root = os.geteuid() == 0  # then its own user must pass through data_dir
        private_dir(str(self.pgdata.parent), SEARCHABLE_MODE if as_root else DIR_MODE)
        try:
            info = self._start_as_root(pgserver) if as_root else _start(pgserver, self.pgdata)
        except UserError as exc:
            raise EmbeddedError(f"cannot start the embedded PostgreSQL as root: {exc}") from None
        except Exception as exc:  # pgserver raises CalledProcessError, TimeoutExpired, ...
            raise EmbeddedError(
                f"cannot start the embedded PostgreSQL in {self.pgdata}: "
                f"{exc} (its log: {self.log_file})"
            ) from exc
        self._started = True
        self._socket_dir = info.socket_dir
        log.info(
            "embedded PostgreSQL running (data %s, socket %s, pid %s)",
            self.pgdata,
            info.socket_dir,
            info.pid,
        )
        return str(info.get_uri())

    def ensure_max_connections(self, conninfo: str, needed: int) -> None:
        """Raise the server's max_connections to fit the configuration (restarts it once)."""
        with roles.connect(conninfo, roles.MASTER, autocommit=True) as conn:
            row = conn.execute("SHOW max_connections").fetchone()
            current = int(row[0]) if row else 0
            wanted = needed + RESERVED_MARGIN
            if current >= wanted:
                return
            conn.execute(f"ALTER SYSTEM SET max_connections = {int(wanted)}")
        log.info(
            "embedded PostgreSQL: max_connections %d -> %d (restarting it once)", current, wanted
        )
        self._pg_ctl("-w", "-m", "fast", "restart")

    def stop(self) -> None:
        if not self._started:
            return
        socket_dir = self._made_socket_dir()
        try:
            self._pg_ctl("-w", "-m", "fast", "stop")
            log.info("embedded PostgreSQL stopped")
        except Exception as exc:
            log.warning("could not stop the embedded PostgreSQL: %s", exc)
        else:
            if socket_dir is not None:
                shutil.rmtree(socket_dir, ignore_errors=True)
        self._started = False

    def _start_as_root(self, pgserver: Any) -> Any:
        user = server_user(self.pgdata, self._root_user)
        check_reachable(user, self.pgdata, pgserver._commands.POSTGRES_BIN_PATH)
        user, created = ensure_user(user)
        if created:
            log.info(
                "created the system user '%s' (no login shell, no home) to run the "
                "embedded PostgreSQL",
                user.name,
            )
        log.info(
            "running as root: the embedded PostgreSQL runs as user '%s' (uid %d)",
            user.name,
            user.uid,
        )
        self._user = user
        self._own_pgdata(user)
        info = pgserver.utils.PostmasterInfo.read_from_pgdata(self.pgdata)
        if info is not None and info.is_running():
            return info
        if not (self.pgdata / "PG_VERSION").exists():
            self._run(
                pgserver._commands.initdb,
                "--auth=trust",
                "--auth-local=trust",
                "--encoding=utf8",
                "-U",
                "postgres",
            )
        self._pg_ctl(*self._start_args(self._new_socket_dir(user)))
        return self._wait_ready(pgserver.utils.PostmasterInfo)

    def _start_args(self, socket_dir: Path) -> tuple[str, ...]:
        """pg_ctl's arguments to start it: on a Unix socket in socket_dir only (no TCP)."""
        return ("-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(self.log_file), "start")

    # -- while it serves (the master's supervisor) -------------------------------------------

    def postmaster_pid(self) -> int | None:
        """The running postmaster's pid, from postmaster.pid, 0 while a starting server
        writes the file; None when it is not running (no file, or its process gone: a
        postmaster killed with SIGKILL leaves the file)."""
        pid = self._recorded_pid()
        if pid is None or (pid and not _alive(pid)):
            return None
        return pid

    def death_reason(self, log_offset: int) -> str:
        """Why postmaster_pid() found no server, for a log line; what its log got after
        `log_offset` (its size while it was seen running) tells why it stopped."""
        if self._recorded_pid() is not None:
            return (
                "its process is gone and postmaster.pid stayed (killed with SIGKILL, by "
                "the OOM killer or a person)"
            )
        last = self.log_since(log_offset)
        return "it stopped (postmaster.pid removed)" + (f"; its log: {last}" if last else "")

    def spawn_start(self) -> subprocess.Popen[bytes]:
        """Start it again where it listened, without waiting: pg_ctl -w runs in a child
        process that the caller reaps (it exits 0 once the server accepts connections)."""
        if self._socket_dir is None:
            raise EmbeddedError("the embedded PostgreSQL was never started by this process")
        self._remove_stale_locks(self._socket_dir)
        command = [
            str(Path(_import_pgserver()._commands.POSTGRES_BIN_PATH) / "pg_ctl"),
            "-D",
            str(self.pgdata),
            *self._start_args(self._socket_dir),
        ]
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **self._user_args(),
        )

    def log_size(self) -> int:
        try:
            return self.log_file.stat().st_size
        except OSError:
            return 0

    def log_since(self, offset: int) -> str:
        """The last FATAL or PANIC line its log got after `offset`, else its last line."""
        try:
            with open(self.log_file, "rb") as handle:
                handle.seek(max(offset, self.log_size() - LOG_TAIL))
                lines = handle.read().decode(errors="replace").splitlines()
        except OSError:
            return ""
        lines = [line.strip() for line in lines if line.strip()]
        fatal = [line for line in lines if "FATAL:" in line or "PANIC:" in line]
        return (fatal or lines or [""])[-1]

    def _recorded_pid(self) -> int | None:
        return _lock_pid(self.pgdata / "postmaster.pid")

    def _remove_stale_locks(self, socket_dir: Path) -> None:
        """PostgreSQL takes over a lock file (postmaster.pid, the socket's) whose process is
        gone, but not one naming a zombie: a killed postmaster its new parent has not reaped
        yet, or never will (a container's init that reaps nothing)."""
        for lock in (self.pgdata / "postmaster.pid", socket_dir / f"{SOCKET_NAME}.lock"):
            pid = _lock_pid(lock)
            if pid and not _alive(pid):
                lock.unlink(missing_ok=True)
                log.info("removed the stale %s (pid %d is gone)", lock, pid)

    def _own_pgdata(self, user: ServerUser) -> None:
        """data_dir/postgres, owned by `user`, mode 0700: the one directory prefork changes."""
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        if self.pgdata.stat().st_uid == user.uid:
            return
        if (self.pgdata / "PG_VERSION").exists():
            raise UserError(
                f"{self.pgdata} holds a cluster owned by root, which PostgreSQL "
                "refuses to run; chown -R it to an unprivileged user"
            )
        os.chown(self.pgdata, user.uid, user.gid)
        self.pgdata.chmod(0o700)

    def _new_socket_dir(self, user: ServerUser) -> Path:
        if len(os.fsencode(self.pgdata / SOCKET_NAME)) < SUN_PATH_MAX:
            return self.pgdata
        directory = Path(tempfile.mkdtemp(prefix=SOCKET_DIR_PREFIX))  # mode 0700, new
        os.chown(directory, user.uid, user.gid)
        return directory

    def _made_socket_dir(self) -> Path | None:
        """The socket directory _new_socket_dir() made for a running server, if it made one."""
        if self._user is None:
            return None
        info = _import_pgserver().utils.PostmasterInfo.read_from_pgdata(self.pgdata)
        path = info.socket_dir if info is not None else None
        made = (
            path is not None
            and path.parent == Path(tempfile.gettempdir())
            and path.name.startswith(SOCKET_DIR_PREFIX)
        )
        return path if made else None

    def _wait_ready(self, postmaster_info: Any) -> Any:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            info = postmaster_info.read_from_pgdata(self.pgdata)
            if info is not None and info.is_running() and info.status == "ready":
                return info
            if time.monotonic() >= deadline:
                raise TimeoutError(f"not ready after {READY_TIMEOUT:g} s")
            time.sleep(0.1)

    def _pg_ctl(self, *args: str) -> None:
        self._run(_import_pgserver()._commands.pg_ctl, *args)

    def _run(self, command: Any, *args: str) -> None:
        """One of pgserver's command functions, as the server's user when prefork is root."""
        command(list(args), pgdata=self.pgdata, timeout=READY_TIMEOUT, **self._user_args())

    def _user_args(self) -> dict[str, Any]:
        if self._user is None:
            return {}
        return {**self._user.subprocess_args(), "cwd": self.pgdata}


def _start(pgserver: Any, pgdata: Path) -> Any:
    """Not root: pgserver starts it (or finds it running) and says where it listens."""
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    server.ensure_postgres_running()  # a handle cached from an earlier start
    return server.get_postmaster_info()


def _lock_pid(lock: Path) -> int | None:
    """The pid a PostgreSQL lock file names; None without the file, 0 while a starting
    server writes it."""
    try:
        first = lock.read_text().split("\n", 1)[0]
    except FileNotFoundError:
        return None
    except OSError:
        return 0  # unreadable for now: taken for a server starting
    try:
        return int(first)
    except ValueError:
        return 0


def _alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (killed, not reaped yet) does not."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def _import_pgserver() -> Any:
    # pgserver resolves a runtime directory at import and warns when XDG_RUNTIME_DIR is unset;
    # its handle bookkeeping and command lines are logged at INFO: keep both out of our log.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    return pgserver
