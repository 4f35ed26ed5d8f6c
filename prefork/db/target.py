"""Where the database is: PostgreSQL from the db_* options, SQLite, or the embedded server.

With every db_* option empty prefork starts its own PostgreSQL (embedded.py); an explicit
db_uri overrides the separate options, which in turn override the parts of the URI they name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import unquote

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from prefork.config import Settings

POSTGRESQL, SQLITE, EMBEDDED = "postgresql", "sqlite", "embedded"
SQLITE_PREFIX = "sqlite:///"
CONNECT_TIMEOUT = 5  # seconds libpq waits for one connection attempt


@dataclass(frozen=True)
class Target:
    kind: str
    conninfo: str = ""  # libpq connection string (PostgreSQL and, once started, embedded)
    path: str = ""  # SQLite database file

    @property
    def is_postgres(self) -> bool:
        return self.kind != SQLITE

    def describe(self) -> str:
        """Where the database is, for logs and `prefork check`; never the password."""
        if self.kind == SQLITE:
            return f"SQLite database {self.path}"
        if not self.conninfo:
            return "embedded PostgreSQL (not started)"
        params = conninfo_to_dict(self.conninfo)
        host = params.get("host") or "local socket"
        port = params.get("port") or "5432"
        where = f"{host}:{port}" if not str(host).startswith("/") else f"socket {host}"
        label = "embedded PostgreSQL" if self.kind == EMBEDDED else "PostgreSQL"
        return (
            f"{label} at {where}, database {params.get('dbname') or '(default)'}, "
            f"user {params.get('user') or '(default)'}"
        )


def resolve_target(settings: Settings) -> Target:
    """The database the settings name; embedded when every db_* option is empty."""
    uri = settings.db_uri
    if uri.startswith("sqlite:"):
        return Target(SQLITE, path=sqlite_path(uri))
    explicit = {
        "host": settings.db_host,
        "port": str(settings.db_port) if settings.db_port else "",
        "user": settings.db_user,
        "password": settings.db_password,
        "dbname": settings.db_name,
    }
    if not uri and not any(explicit.values()):
        return Target(EMBEDDED)
    given = {key: value for key, value in explicit.items() if value}
    return Target(POSTGRESQL, postgres_conninfo(uri, sslmode=settings.db_sslmode, **given))


def postgres_conninfo(base: str, **params: str) -> str:
    """A libpq connection string with prefork's fixed parameters added."""
    params.setdefault("connect_timeout", str(CONNECT_TIMEOUT))
    return make_conninfo(base, **params)


def sqlite_path(uri: str) -> str:
    """sqlite:///relative/path or sqlite:////absolute/path (SQLAlchemy's convention)."""
    path = unquote(uri[len(SQLITE_PREFIX) :])
    return os.path.abspath(os.path.expanduser(path))
