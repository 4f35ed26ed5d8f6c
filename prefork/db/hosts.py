"""The host registry: every server on a database records itself in prefork.host, so each
host knows the others and can tell when they cannot work together.

One row per server (host name and HTTP port). Its master writes it at start, on the
connection it migrates with; its realtime process rewrites it every BEAT seconds (the one
process of a server that always holds a database connection and an event loop); the master
deletes it at a graceful stop. A row not rewritten for STALE seconds is a server that is
gone, frozen or without its realtime process: shown, but not counted as a member.

What the hosts compare: where sessions live (a file or memory store never reaches another
host; Redis must be the same server and database) and the key that signs the cookies. The
key is compared by a fingerprint, a slow salted hash cut to 64 bits, never by itself; an
unset session_secret means a random key of the host's own. And the connections the hosts
can open together, against the database's max_connections.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from prefork import __version__
from prefork.config import Settings
from prefork.db.capacity import connection_budget
from prefork.db.roles import host_name

BEAT = 15.0  # seconds between a live server's rewrites of its row
STALE = 60.0  # seconds after which a row no longer counts as a member
FINGERPRINT_SALT = b"prefork session_secret fingerprint"
FINGERPRINT_ROUNDS = 100_000  # makes guessing a weak secret from its fingerprint slow
UNSHARED = ("file", "memory")

COLUMNS = (
    "host",
    "http_port",
    "pid",
    "version",
    "mode",
    "gevent_port",
    "session_store",
    "session_location",
    "session_key",
    "connections",
)
REGISTER = (
    f"INSERT INTO prefork.host ({', '.join(COLUMNS)}) VALUES "
    f"({', '.join(['%s'] * len(COLUMNS))}) ON CONFLICT (host, http_port) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS[2:])
    + ", heartbeat = now(), started_at = CASE WHEN prefork.host.pid = EXCLUDED.pid "
    "THEN prefork.host.started_at ELSE now() END"
)
LEAVE = "DELETE FROM prefork.host WHERE host = %s AND http_port = %s AND pid = %s"
READ = (
    f"SELECT {', '.join(COLUMNS)}, extract(epoch FROM now() - heartbeat), "
    "extract(epoch FROM started_at) FROM prefork.host ORDER BY host, http_port"
)


@dataclass(frozen=True)
class HostInfo:
    host: str
    http_port: int
    pid: int  # the master's
    version: str
    mode: str  # multiprocessing or threaded
    gevent_port: int
    session_store: str  # file, memory or redis
    session_location: str  # where: the sessions directory, or Redis's host:port/db (no
    #                         credentials)
    session_key: str  # fingerprint of session_secret; empty when none is set
    connections: int  # the configuration's connection budget
    seen_ago: float = 0.0  # seconds since the row was last written
    started_at: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def live(self) -> bool:
        return self.seen_ago <= STALE

    def values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, column) for column in COLUMNS)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def describe(settings: Settings, master_pid: int) -> HostInfo:
    """This server's row."""
    store, location = _session_place(settings)
    return HostInfo(
        host_name(),
        settings.http_port,
        master_pid,
        __version__,
        "multiprocessing" if settings.multiprocessing else "threaded",
        settings.gevent_port,
        store,
        location,
        fingerprint(settings.session_secret),
        connection_budget(settings).total,
    )


@lru_cache(maxsize=4)  # the dashboard asks on every poll; the hash takes ~50 ms
def fingerprint(secret: str) -> str:
    if not secret:
        return ""
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), FINGERPRINT_SALT, FINGERPRINT_ROUNDS)
    return digest[:8].hex()


def _session_place(settings: Settings) -> tuple[str, str]:
    store = settings.session_store
    if store in UNSHARED:
        where = os.path.join(os.path.abspath(settings.data_dir), "sessions")
        return store, where if store == "file" else ""
    parts = urlsplit(store)
    database = parts.path.strip("/") or "0"
    return "redis", f"{parts.hostname or 'localhost'}:{parts.port or 6379}/{database}"


def register(conn: Any, info: HostInfo) -> None:
    conn.execute(REGISTER, info.values())


def leave(conn: Any, info: HostInfo) -> None:
    conn.execute(LEAVE, (info.host, info.http_port, info.pid))


def read_hosts(conn: Any) -> list[HostInfo]:
    """Every row; none on a database no server of this version has prepared yet (what
    `prefork check` may look at before the first start)."""
    row = conn.execute("SELECT to_regclass('prefork.host') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return []
    return hosts_of(conn.execute(READ).fetchall())


def hosts_of(rows: list[Any]) -> list[HostInfo]:
    """The rows of READ."""
    return [
        HostInfo(
            **dict(zip(COLUMNS, row, strict=False)),
            seen_ago=float(row[-2]),
            started_at=float(row[-1]),
        )
        for row in rows
    ]


def members(hosts: list[HostInfo], me: HostInfo) -> list[HostInfo]:
    """The other live servers of the cluster."""
    return [h for h in hosts if h.live and (h.host, h.http_port) != (me.host, me.http_port)]
