"""/web/health, answered by the server itself, as Odoo answers it.

Plain, it touches neither the application, the database nor a session: a load balancer can
poll it as often as it likes. With `?db_server_status=1` it also runs `SELECT 1` through the
process's pool and answers 500 with `"status": "fail"` when that fails. While the server
drains before a stop (drain_delay) it answers 503 with `"status": "draining"`, whatever
the query: the load balancer that polls it stops sending traffic here, while the server
still serves what arrives.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from prefork.db.pool import Database

HEALTH_PATH = "/web/health"
_FALSE = ("", "0", "false", "False")


class HealthCheck:
    """The WSGI application of HEALTH_PATH (see prefork/wsgi/routes.py)."""

    def __init__(self, database: Database | None, draining: Callable[[], bool]) -> None:
        self.database = database
        self.draining = draining

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        report: dict[str, Any] = {"status": "pass"}
        status = "200 OK"
        if self.draining():
            report["status"] = "draining"
            status = "503 Service Unavailable"
        elif _wants_db_status(environ.get("QUERY_STRING", "")):
            reachable = self.database is not None and self.database.ping()
            report["db_server_status"] = reachable
            if not reachable:
                report["status"] = "fail"
                status = "500 Internal Server Error"
        body = json.dumps(report).encode()
        start_response(
            status,
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [body]


def _wants_db_status(query: str) -> bool:
    values = parse_qs(query, keep_blank_values=True).get("db_server_status")
    return values is not None and values[-1] not in _FALSE
