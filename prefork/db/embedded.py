"""The embedded PostgreSQL: a server from the `pgserver` package in data_dir/postgres.

The master starts it before forking, so a newcomer runs multi-processing mode with no database
installed, and stops it when it exits; the next start reuses the data. It listens on a Unix
socket only (no TCP port to collide with). pgserver's own reference counting of handles is not
used (a master killed with SIGKILL would leave its pid counted forever): prefork decides when
to stop it, and a master that hands over to a new one (USR2) or re-executes leaves it running.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import psycopg

log = logging.getLogger("prefork.db")

RESERVED_MARGIN = 10  # connections beyond the configuration's budget (psql, check, ...)


class EmbeddedError(Exception):
    """The embedded server could not be started; the message says why and where its log is."""


class EmbeddedPostgres:
    def __init__(self, data_dir: str) -> None:
        self.pgdata = Path(data_dir) / "postgres"
        self._server: Any = None

    @property
    def log_file(self) -> Path:
        return self.pgdata / "log"

    def start(self) -> str:
        """Start (or reuse) the server; returns its connection string."""
        pgserver = _import_pgserver()
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._server = pgserver.get_server(self.pgdata, cleanup_mode=None)
            self._server.ensure_postgres_running()  # a handle cached from an earlier start
        except Exception as exc:  # pgserver raises CalledProcessError, TimeoutExpired, ...
            raise EmbeddedError(f"cannot start the embedded PostgreSQL in {self.pgdata}: "
                                f"{exc} (its log: {self.log_file})") from exc
        uri = str(self._server.get_uri())
        log.info("embedded PostgreSQL running (data %s, socket %s, pid %s)", self.pgdata,
                 self._server.get_postmaster_info().socket_dir, self._server.get_pid())
        return uri

    def ensure_max_connections(self, conninfo: str, needed: int) -> None:
        """Raise the server's max_connections to fit the configuration (restarts it once)."""
        with psycopg.connect(conninfo, autocommit=True) as conn:
            row = conn.execute("SHOW max_connections").fetchone()
            current = int(row[0]) if row else 0
            wanted = needed + RESERVED_MARGIN
            if current >= wanted:
                return
            conn.execute(f"ALTER SYSTEM SET max_connections = {int(wanted)}")
        log.info("embedded PostgreSQL: max_connections %d -> %d (restarting it once)",
                 current, wanted)
        self._pg_ctl("-w", "-m", "fast", "restart")

    def stop(self) -> None:
        if self._server is None:
            return
        try:
            self._pg_ctl("-w", "-m", "fast", "stop")
            log.info("embedded PostgreSQL stopped")
        except Exception as exc:
            log.warning("could not stop the embedded PostgreSQL: %s", exc)
        self._server = None

    def _pg_ctl(self, *args: str) -> None:
        from pgserver import _commands

        pg_ctl = _commands.pg_ctl  # type: ignore[attr-defined]  # set at import time
        pg_ctl(list(args), pgdata=self.pgdata, user=self._server.system_user, timeout=60)


def _import_pgserver() -> Any:
    # pgserver resolves a runtime directory at import and warns when XDG_RUNTIME_DIR is unset;
    # its handle bookkeeping and command lines are logged at INFO: keep both out of our log.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    return pgserver
