"""What each of prefork's PostgreSQL connections says about itself, and how long the server
lets it hold what it holds.

Every connection carries `application_name = "prefork <role> <host>"`, so pg_stat_activity
shows which kind of process on which host holds which connection. Every connection also has
TCP keepalives in both directions: libpq's, so a process notices a server that vanished, and
the server's own (tcp_keepalives_*, set per session), so PostgreSQL notices a host that vanished
and ends its sessions, releasing their locks, within about KEEPALIVE_LIMIT seconds instead
of the kernel's two hours. A role whose work is bounded in time (an HTTP request by
limit_time_real, say) also gets a statement_timeout and an idle_in_transaction_session_timeout
of that bound plus GRACE: past it the process that opened the transaction has been stopped
by its master or is frozen, so nothing is lost by ending the transaction and everything is
gained for the hosts waiting on its locks. Keepalives do not apply to Unix-socket
connections (the embedded server), where a dead peer is seen at once.
"""

from __future__ import annotations

import socket
from functools import lru_cache
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

HTTP, CRON, REALTIME, MASTER, CLI, THREADED = (
    "http",
    "cron",
    "realtime",
    "master",
    "cli",
    "threaded",
)

KEEPALIVE_IDLE = 10  # seconds of silence before the first probe
KEEPALIVE_INTERVAL = 5  # seconds between probes
KEEPALIVE_COUNT = 3  # unanswered probes before the peer counts as gone
KEEPALIVE_LIMIT = KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_COUNT
GRACE = 10  # seconds past a role's time bound before the server ends its work
NAME_MAX = 63  # bytes PostgreSQL keeps of application_name (NAMEDATALEN - 1)


@lru_cache(maxsize=1)
def host_name() -> str:
    """This machine's name as other hosts of the cluster see it in the database."""
    return socket.gethostname() or "localhost"


def application_name(role: str) -> str:
    return f"prefork {role} {host_name()}".encode()[:NAME_MAX].decode(errors="ignore")


def server_settings(bound: float) -> dict[str, str]:
    """The session settings of a connection: the server's keepalives and, for a bounded
    role, its timeouts (milliseconds)."""
    values = {
        "tcp_keepalives_idle": str(KEEPALIVE_IDLE),
        "tcp_keepalives_interval": str(KEEPALIVE_INTERVAL),
        "tcp_keepalives_count": str(KEEPALIVE_COUNT),
    }
    if bound > 0:
        limit = millis(bound + GRACE)
        values["statement_timeout"] = limit
        values["idle_in_transaction_session_timeout"] = limit
    return values


def millis(seconds: float) -> str:
    """A duration setting's value in milliseconds, as PostgreSQL reads one without unit."""
    return str(int(seconds * 1000))


def setup_statement(values: dict[str, str]) -> tuple[str, list[str]]:
    """One statement that gives the session these settings, for its whole life.

    Sent after connecting rather than as a startup `options` parameter, which connection
    poolers such as PgBouncer refuse by default."""
    calls = ", ".join("set_config(%s, %s, false)" for _ in values)
    return f"SELECT {calls}", [item for pair in values.items() for item in pair]


def apply(conn: Any, values: dict[str, str]) -> None:
    """Give the session these settings, leaving it with no transaction open."""
    conn.execute(*setup_statement(values))
    if not conn.autocommit:
        conn.commit()


def role_conninfo(conninfo: str, role: str) -> str:
    """`conninfo` for a connection of `role`: its application_name (unless the connection
    string names one) and libpq's keepalives."""
    given = conninfo_to_dict(conninfo)
    return make_conninfo(
        conninfo,
        application_name=str(given.get("application_name") or application_name(role)),
        keepalives="1",
        keepalives_idle=str(KEEPALIVE_IDLE),
        keepalives_interval=str(KEEPALIVE_INTERVAL),
        keepalives_count=str(KEEPALIVE_COUNT),
    )


def prepare(conn: Any, bound: float = 0) -> None:
    """Apply the role's session settings to a new connection, leaving it idle."""
    apply(conn, server_settings(bound))


def connect(
    conninfo: str, role: str, bound: float = 0, **kwargs: Any
) -> psycopg.Connection[tuple[Any, ...]]:
    """A new connection of `role` with its session settings applied."""
    conn = psycopg.connect(role_conninfo(conninfo, role), **kwargs)
    try:
        prepare(conn, bound)
    except BaseException:
        conn.close()
        raise
    return conn


async def prepare_async(conn: Any, bound: float = 0) -> None:
    await conn.execute(*setup_statement(server_settings(bound)))
    if not conn.autocommit:
        await conn.commit()


async def connect_async(
    conninfo: str, role: str, bound: float = 0, **kwargs: Any
) -> psycopg.AsyncConnection[tuple[Any, ...]]:
    conn = await psycopg.AsyncConnection.connect(role_conninfo(conninfo, role), **kwargs)
    try:
        await prepare_async(conn, bound)
    except BaseException:
        await conn.close()
        raise
    return conn
