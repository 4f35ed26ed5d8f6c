"""The cluster as `prefork status` and the dashboard show it: every host in the registry,
and what is wrong with them together (prefork/db/cluster.py)."""

from __future__ import annotations

from typing import Any

import psycopg

from prefork.config import Settings
from prefork.db import roles
from prefork.db.capacity import server_limits
from prefork.db.cluster import cluster_warnings
from prefork.db.errors import one_line
from prefork.db.hosts import HostInfo, describe, members, read_hosts
from prefork.db.target import POSTGRESQL, resolve_target

CONNECT_TIMEOUT = 3  # seconds `prefork status` waits for the database


def cluster_view(conn: Any, settings: Settings, master_pid: int) -> dict[str, Any]:
    """{"hosts": [...], "warnings": [...]}; no hosts before the registry exists."""
    hosts = read_hosts(conn)
    me = running(hosts, settings, master_pid)
    warnings = cluster_warnings(me, members(hosts, me), *server_limits(conn))
    return {"hosts": [h.to_json() | {"live": h.live} for h in hosts], "warnings": warnings}


def running(hosts: list[HostInfo], settings: Settings, master_pid: int) -> HostInfo:
    """The running server's own row: what it wrote, not what this process's settings say
    (`prefork status` may run without the secret the service has in its environment); the
    settings' description until the row exists."""
    me = describe(settings, master_pid)
    return next(
        (h for h in hosts if (h.host, h.http_port, h.pid) == (me.host, me.http_port, master_pid)),
        me,
    )


def read_cluster(settings: Settings, master_pid: int) -> dict[str, Any]:
    """The view through a connection of its own; {"error": ...} when it cannot be had. The
    embedded server (a Unix socket of one host) and SQLite have no cluster."""
    target = resolve_target(settings)
    if target.kind != POSTGRESQL:
        return {"hosts": [], "warnings": []}
    try:
        with roles.connect(
            target.conninfo, roles.CLI, autocommit=True, connect_timeout=CONNECT_TIMEOUT
        ) as conn:
            return cluster_view(conn, settings, master_pid)
    except psycopg.Error as exc:
        return {"hosts": [], "warnings": [], "error": one_line(exc)}
