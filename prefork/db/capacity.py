"""How many PostgreSQL connections a configuration can open, against what the server allows.

Every process has its own pool of at most db_maxconn connections (the realtime process:
catchup_pool_size() for its clients and two for the bus), so the ceiling is a sum over
processes. When it exceeds the server's max_connections less the superuser reserve, a busy
moment ends in "too many clients" errors (Odoo's "The Connection Pool Is Full"): `prefork
check` and the start say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefork.config import Settings

MASTER_CONNECTIONS = 1  # the master's own connection, held only while it starts
BUS_CONNECTIONS = 2  # the realtime bus: its LISTEN connection and the one that orders messages
CATCHUP_CONNECTIONS = 4  # the realtime process's pool for clients catching up, by default


def catchup_pool_size(settings: Settings) -> int:
    return settings.db_maxconn_gevent or CATCHUP_CONNECTIONS


@dataclass(frozen=True)
class Budget:
    rows: tuple[tuple[str, int, int], ...]  # (processes, how many, connections each)

    @property
    def total(self) -> int:
        return sum(count * each for _, count, each in self.rows)

    def explain(self) -> str:
        parts = [f"{count} x {each} ({who})" for who, count, each in self.rows if count]
        return " + ".join(parts) + f" = {self.total}"


def connection_budget(settings: Settings) -> Budget:
    per_process = settings.db_maxconn
    # The bus holds two more: its LISTEN connection and the one that orders messages.
    realtime = catchup_pool_size(settings) + BUS_CONNECTIONS
    if not settings.multiprocessing:
        return Budget((("threaded server", 1, per_process), ("realtime thread", 1, realtime)))
    return Budget(
        (
            ("http workers", max(settings.workers, 0), per_process),
            ("cron workers", settings.max_cron_threads, per_process),
            ("realtime process", 1, realtime),
            ("master", 1, MASTER_CONNECTIONS),
        )
    )


LIMITS = (
    "SELECT name, setting FROM pg_settings WHERE name IN "
    "('max_connections', 'superuser_reserved_connections', 'reserved_connections')"
)


def server_limits(conn: Any) -> tuple[int, int]:
    """(max_connections, connections reserved for superusers) of the server."""
    return limits_of(conn.execute(LIMITS).fetchall())


def limits_of(rows: list[Any]) -> tuple[int, int]:
    values = {name: int(setting) for name, setting in rows}
    reserved = values.get("superuser_reserved_connections", 0) + values.get(
        "reserved_connections", 0
    )
    return values.get("max_connections", 0), reserved


def capacity_warning(budget: Budget, max_connections: int, reserved: int) -> str | None:
    available = max_connections - reserved
    if budget.total <= available:
        return None
    return (
        f"this configuration can open {budget.total} database connections "
        f"({budget.explain()}) but the server accepts {available} "
        f"(max_connections {max_connections} - {reserved} reserved): lower db_maxconn "
        f"or workers, or raise max_connections"
    )
