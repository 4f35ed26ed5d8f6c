"""Publishing on the realtime bus, from request handlers, cron jobs and scripts.

    from prefork import bus

    def app(environ, start_response):
        bus.publish("chat", {"text": "hello"}, db=environ["prefork.db"])  # on commit
        ...

    @cron(every="1m")
    def tick(ctx):
        bus.publish("ticks", {"at": time.time()}, db=ctx.conn)

Without `db`, the message is written in a transaction of its own, committed at once.
Subscribers receive `{"id": N, "message": <the message>}` through the realtime process
(WebSocket at /websocket, long-polling at /longpolling/poll). The bus needs PostgreSQL.
"""

from __future__ import annotations

from typing import Any

from prefork import db as _db
from prefork.bus.store import channel_name, write

__all__ = ["channel_name", "publish"]


def publish(channel: Any, message: Any, *, db: Any = None) -> None:
    """Publish `message` (JSON-serialisable) on `channel` (a string or a list)."""
    if db is None:
        with _db.connection() as conn:
            _require_postgres(conn)
            write(conn, channel, message)
        return
    conn = db.connection() if isinstance(db, _db.RequestTransaction) else db
    _require_postgres(conn)
    write(conn, channel, message)


def _require_postgres(conn: Any) -> None:
    if type(conn).__module__.startswith("sqlite3"):
        raise RuntimeError("the realtime bus needs PostgreSQL; this server uses SQLite")
