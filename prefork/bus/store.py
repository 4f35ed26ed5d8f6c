"""The bus table and the statements that write, order and read it.

A message is written by the publishing transaction with no id and announced with a NOTIFY
that carries nothing (PostgreSQL delivers it at commit, caps payloads at 8000 bytes, and
would deliver it to nobody on rollback). The realtime process then gives every committed
message its delivery id, under one advisory lock, and commits: ids become visible in
increasing order, so a reader asking for `id > last` can never miss a lower id that
commits later, whatever order the publishing transactions committed in. Readers learn of
new ids from a second NOTIFY carrying the highest one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

from prefork.db.schema import ADVISORY_LOCK_KEY

WRITTEN = "prefork_bus_written"  # NOTIFY channel: messages await their delivery id
SEQUENCED = "prefork_bus"  # NOTIFY channel: messages got ids (payload: the highest)
SEQUENCE_LOCK = ADVISORY_LOCK_KEY + 1
FETCH_BATCH = 1000

INSERT = "INSERT INTO prefork.bus_message (channel, message) VALUES (%s, %s)"
ANNOUNCE = "SELECT pg_notify(%s, %s)"
# The CTE numbers the rows in write order (nextval follows the sorted scan).
SEQUENCE = """
WITH todo AS (SELECT pk FROM prefork.bus_message WHERE id IS NULL ORDER BY pk),
     numbered AS (SELECT pk, nextval('prefork.bus_delivery') AS id FROM todo)
UPDATE prefork.bus_message m SET id = numbered.id FROM numbered WHERE m.pk = numbered.pk
RETURNING m.id"""
FETCH = "SELECT id, channel, message FROM prefork.bus_message WHERE id > %s ORDER BY id LIMIT %s"
REPLAY = (
    "SELECT id, channel, message FROM prefork.bus_message WHERE id > %s "
    "AND channel = ANY(%s) AND created_at > now() - make_interval(secs => %s) "
    "ORDER BY id LIMIT %s"
)
LAST_ID = "SELECT coalesce(max(id), 0) FROM prefork.bus_message"
COLLECT = (
    "DELETE FROM prefork.bus_message WHERE id IS NOT NULL "
    "AND created_at < now() - make_interval(secs => %s)"
)


class Message(NamedTuple):
    id: int
    channel: str
    message: str  # JSON text, sent to clients as stored
    item: str  # as an element of a websocket frame: {"id": N, "message": ...}, built once


def channel_name(channel: Any) -> str:
    """Channels are strings; a list or tuple (Odoo's ("db", "res.partner", 7) style) is
    named by its compact JSON text, so both sides of the bus agree on it."""
    if isinstance(channel, str):
        return channel
    if isinstance(channel, (list, tuple)):
        return _compact(list(channel))
    raise TypeError(f"a bus channel is a string or a list, not {type(channel).__name__}")


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def encode(message: Any) -> str:
    try:
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"a bus message must be JSON-serialisable: {exc}") from None


def write(conn: Any, channel: Any, message: Any) -> None:
    """Write one message in the caller's transaction (psycopg connection or anything with
    its execute()); it is delivered only if that transaction commits."""
    conn.execute(INSERT, (channel_name(channel), encode(message)))
    conn.execute(ANNOUNCE, (WRITTEN, ""))


def rows_to_messages(rows: Sequence[Sequence[Any]]) -> list[Message]:
    return [Message(int(r[0]), r[1], r[2], f'{{"id":{int(r[0])},"message":{r[2]}}}') for r in rows]
