"""A WSGI app that uses prefork's database API, for the database tests.

Works on PostgreSQL and SQLite (placeholders differ); the table is `dbapp_items`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

from prefork import db

CREATE = "CREATE TABLE IF NOT EXISTS dbapp_items (value text NOT NULL)"


def _sql(conn: Any, query: str) -> str:
    return query.replace("%s", "?") if isinstance(conn, sqlite3.Connection) else query


def _insert(conn: Any, value: str) -> None:
    conn.execute(_sql(conn, "INSERT INTO dbapp_items (value) VALUES (%s)"), (value,))


def _count(conn: Any, value: str) -> int:
    row = conn.execute(
        _sql(conn, "SELECT count(*) FROM dbapp_items WHERE value = %s"), (value,)
    ).fetchone()
    return int(row[0])


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
    query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    path = environ["PATH_INFO"]
    tx = environ["prefork.db"]
    value = query.get("value", "")
    if path == "/setup":
        tx.execute(CREATE)
        return _reply(start_response, "200 OK", "ready")
    if path == "/insert":
        _insert(tx.connection(), value)
        if query.get("fail"):
            raise RuntimeError("failing after the insert")
        status = query.get("status", "200 OK")
        return _reply(start_response, status, f"inserted {value}")
    if path == "/count":
        return _reply(start_response, "200 OK", str(_count(tx.connection(), value)))
    if path == "/stream":
        return _stream(tx, value, start_response, bool(query.get("fail")))
    if path == "/hold":
        tx.execute("SELECT pg_sleep(%s)", (float(query.get("s", "0.2")),))
        return _reply(start_response, "200 OK", "held")
    if path == "/two":
        tx.execute("SELECT 1")
        with db.connection() as other:  # a second connection while the first is held
            other.execute("SELECT 1")
        return _reply(start_response, "200 OK", "two")
    if path == "/whoami":
        row = tx.execute(
            "SELECT pg_backend_pid(), current_setting('application_name'), "
            "current_setting('statement_timeout'), "
            "current_setting('idle_in_transaction_session_timeout'), "
            "current_setting('tcp_keepalives_idle'), "
            "inet_client_addr() IS NOT NULL"
        ).fetchone()
        return _reply(
            start_response,
            "200 OK",
            json.dumps(
                {
                    "pid": os.getpid(),
                    "backend": row[0],
                    "application_name": row[1],
                    "statement_timeout": row[2],
                    "idle_in_transaction_session_timeout": row[3],
                    "tcp_keepalives_idle": row[4],
                    "tcp": row[5],
                }
            ),
        )
    if path == "/trigger":  # prefork.cron.trigger from application code
        from prefork.cron import trigger

        return _reply(start_response, "200 OK", str(trigger(query.get("name", ""))))
    if path == "/sleep":
        time.sleep(float(query.get("s", "0.1")))
        return _reply(start_response, "200 OK", "slept")
    return _reply(start_response, "404 Not Found", "no such page")


def _stream(tx: Any, value: str, start_response: Callable[..., Any], fail: bool) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first "
    _insert(tx.connection(), value)
    yield b"second "
    if fail:
        raise RuntimeError("failing in the middle of the body")
    yield b"last"


def _reply(start_response: Callable[..., Any], status: str, text: str) -> list[bytes]:
    body = text.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
