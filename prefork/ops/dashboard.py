"""The health dashboard at /prefork/ (HTTP Basic, any user name, the password of
`adminpass.dashboard_password`, then a sign-in cookie: see dashboard_auth):
a page that asks /prefork/api every 2 seconds for the master's state (processes, memory
over the last hour, exits, alerts), the cron jobs and the database and bus status."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from importlib import resources
from typing import Any

import psutil

from prefork import __version__
from prefork.config import Settings
from prefork.ops.adminpass import dashboard_password
from prefork.ops.cluster_view import cluster_view
from prefork.ops.dashboard_auth import Access, DashboardAuth
from prefork.ops.state import MasterState, ProcessRow, read_state, state_path
from prefork.sessions import signing
from prefork.wsgi.handler import WSGIApp, direct

PREFIX = "/prefork"
CRON_JOBS = (
    "SELECT name, schedule, active, last_run, last_status, last_duration, next_run "
    "FROM prefork.cron_job ORDER BY name"
)
BUS = (
    "SELECT count(*) FILTER (WHERE created_at > now() - interval '1 hour'), "
    "coalesce(max(id), 0) FROM prefork.bus_message"
)


class Dashboard:
    def __init__(self, app: WSGIApp, settings: Settings) -> None:
        self.app = direct(app)
        self.settings = settings
        self.auth = DashboardAuth(dashboard_password(settings), signing.secret(settings))
        self.page = resources.files("prefork.ops").joinpath("dashboard_page.html").read_bytes()
        self.started = time.time()
        self.process = psutil.Process()  # kept: cpu_percent() measures since the last call

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path != PREFIX and not path.startswith(PREFIX + "/"):
            return self.app(environ, start_response)
        access = self.auth.check(environ)
        if not access.allowed:
            return _refuse(start_response, access)
        cookie = [("Set-Cookie", access.set_cookie)] if access.set_cookie else []
        if path == PREFIX:
            return _send(
                start_response,
                "301 Moved Permanently",
                b"",
                "text/plain",
                [("Location", PREFIX + "/"), *cookie],
            )
        if path == PREFIX + "/":
            return _send(start_response, "200 OK", self.page, "text/html; charset=utf-8", cookie)
        if path == PREFIX + "/api":
            body = json.dumps(self._api(environ.get("prefork.db")), default=str).encode()
            return _send(start_response, "200 OK", body, "application/json", cookie)
        return _send(start_response, "404 Not Found", b"not found\n", "text/plain", cookie)

    def _api(self, tx: Any) -> dict[str, Any]:
        state = read_state(state_path(self.settings)) or self._threaded_state()
        realtime = next(
            (p["state"] for p in state["processes"] if p["role"] == "realtime process"),
            "in this process" if state["mode"] == "threaded" else "not running",
        )
        data: dict[str, Any] = {
            "state": state,
            "cron": [],
            "cluster": {"hosts": [], "warnings": []},
            "database": {"ok": False, "error": "no database"},
            "bus": {"messages_last_hour": 0, "last_id": 0, "realtime": realtime},
        }
        if tx is None:
            return data
        try:
            version = tx.execute("SHOW server_version").fetchone()[0]
            data["database"] = {"ok": True, "version": f"PostgreSQL {version}"}
            columns = (
                "name",
                "schedule",
                "active",
                "last_run",
                "last_status",
                "last_duration",
                "next_run",
            )
            data["cron"] = [
                dict(zip(columns, row, strict=True)) for row in tx.execute(CRON_JOBS).fetchall()
            ]
            count, last = tx.execute(BUS).fetchone()
            data["bus"].update(messages_last_hour=count, last_id=last)
            data["cluster"] = cluster_view(tx, self.settings, state["master"]["pid"])
        except Exception as exc:  # SQLite, or the database away: the page still renders
            if not data["database"]["ok"]:
                data["database"]["error"] = str(exc).splitlines()[0]
        return data

    def _threaded_state(self) -> MasterState:
        """Threaded mode keeps no state file: this process is the whole server."""
        process = self.process
        row = ProcessRow(
            pid=os.getpid(),
            role="threaded server",
            rss=process.memory_info().rss,
            cpu=process.cpu_percent(interval=None),
            requests=0,
            started_at=self.started,
            request="",
            request_seconds=0,
            state="ready",
        )
        return {
            "version": __version__,
            "mode": "threaded",
            "master": row,
            "processes": [],
            "exits": [],
            "alerts": [],
            "memory_history": {},
        }


def _refuse(start_response: Callable[..., Any], access: Access) -> Iterable[bytes]:
    if access.retry_after:
        return _send(
            start_response,
            "429 Too Many Requests",
            b"too many wrong dashboard passwords from this address, retry later\n",
            "text/plain",
            [("Retry-After", str(access.retry_after))],
        )
    return _send(
        start_response,
        "401 Unauthorized",
        b"dashboard password required\n",
        "text/plain",
        [("WWW-Authenticate", 'Basic realm="prefork"')],
    )


def _send(
    start_response: Callable[..., Any],
    status: str,
    body: bytes,
    content_type: str,
    extra: list[tuple[str, str]] | None = None,
) -> Iterable[bytes]:
    start_response(
        status,
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            *(extra or []),
        ],
    )
    return [body]
