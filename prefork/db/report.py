"""What `prefork check` says about the database: where it is, whether it answers, the
prefork schema's version, and the connection budget against the server's max_connections."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg.conninfo import make_conninfo

from prefork.config import Settings
from prefork.db import roles
from prefork.db.capacity import capacity_warning, connection_budget, server_limits
from prefork.db.cluster import cluster_warnings
from prefork.db.errors import one_line
from prefork.db.hosts import describe, members, read_hosts
from prefork.db.schema import VERSION
from prefork.db.target import EMBEDDED, SQLITE, resolve_target

CHECK_TIMEOUT = 5.0  # seconds `prefork check` waits for the database


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def database_report(settings: Settings) -> Report:
    report = Report()
    target = resolve_target(settings)
    budget = connection_budget(settings)
    if target.kind == SQLITE:
        report.lines.append(f"database: {target.describe()} (threaded mode only)")
        return report
    report.lines.append(f"database connections: up to {budget.explain()}")
    if target.kind == EMBEDDED:
        report.lines.append(
            f"database: embedded PostgreSQL in {settings.data_dir}/postgres, started by "
            "`prefork run` (its max_connections is raised to fit the budget)"
        )
        return report
    report.lines.append(f"database: {target.describe()}")
    try:
        timeout = max(1, int(min(CHECK_TIMEOUT, settings.db_connect_timeout)))
        conninfo = make_conninfo(target.conninfo, connect_timeout=str(timeout))
        with roles.connect(conninfo, roles.CLI, autocommit=True) as conn:
            report.lines.append(
                f"  reachable: PostgreSQL {conn.info.server_version // 10000}, "
                f"prefork schema {_schema_version(conn)} (this prefork: {VERSION})"
            )
            limits = server_limits(conn)
            warning = capacity_warning(budget, *limits)
            report.warnings.extend(_cluster(conn, settings, report.lines, limits))
    except psycopg.Error as exc:
        report.problems.append(f"cannot connect to {target.describe()}: {one_line(exc)}")
        return report
    if warning:
        report.warnings.append(warning)
    return report


def _cluster(
    conn: psycopg.Connection[tuple[object, ...]],
    settings: Settings,
    lines: list[str],
    limits: tuple[int, int],
) -> list[str]:
    """What this configuration would find wrong with the hosts already on the database."""
    me = describe(settings, 0)
    others = members(read_hosts(conn), me)
    names = ", ".join(h.name for h in others) or "none"
    lines.append(f"  other live hosts on this database: {names}")
    return cluster_warnings(me, others, *limits)


def _schema_version(conn: psycopg.Connection[tuple[object, ...]]) -> str:
    row = conn.execute("SELECT to_regclass('prefork.schema_version') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return "not created yet (created at start)"
    version = conn.execute("SELECT max(version) FROM prefork.schema_version").fetchone()
    return f"version {version[0] if version else 0}"
