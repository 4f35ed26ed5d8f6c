"""Long-polling for Odoo <= 15 bus clients, as Odoo 15's `BusController` answers it.

POST /longpolling/poll with a JSON-RPC body {"params": {"channels": [...], "last": N,
"options": {...}}}: answers at once when messages above `last` exist, else waits for the
first ones up to TIMEOUT seconds, then answers an empty list. The `broadcast` channel is
added, and channels follow the same rule as websockets (see auth.py). `options.peek`
answers at once, as {"channels": [...], "notifications": [...]} (Odoo 15
`ImDispatch.poll`); `options.bus_inactivity` updates an Odoo database's presence table,
which prefork does not have, so it has no effect. A client without a valid session is
served as an anonymous one, as Odoo's public route serves it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from prefork.bus.store import Message
from prefork.realtime import protocol
from prefork.realtime.hub import Subscriber
from prefork.realtime.protocol import Ignored
from prefork.realtime.websocket import ASGIReceive, ASGISend, Services
from prefork.sessions.stores import StoreUnavailable

TIMEOUT = 50.0
MAX_BODY = 1 << 20


async def serve(
    services: Services, scope: Mapping[str, Any], receive: ASGIReceive, send: ASGISend
) -> None:
    request = await read_rpc(scope, receive, send)
    if request is None:
        return
    rpc_id, params = request
    if "last" not in params and "last_bus_message_id" in params:  # Odoo 15's later name
        params = {**params, "last": params["last_bus_message_id"]}
    try:
        channels, last = protocol.parse_subscription(params)
    except Ignored as bad:
        await server_error(send, rpc_id, str(bad))
        return
    options = params.get("options") or {}
    try:
        identity = await services.gate.connect(headers_of(scope))
    except StoreUnavailable:
        await store_unavailable(send)
        return
    allowed = await services.gate.allowed(identity, channels)
    last = services.starting_point(last)
    if isinstance(options, dict) and options.get("peek"):
        found = await services.history(allowed, last)
        result: Any = {"channels": allowed, "notifications": [item(m) for m in found]}
    else:
        messages = await _wait_for_messages(services, allowed, last, receive)
        if messages is None:
            return  # the client went away
        result = [item(m) for m in messages]
    await reply(send, rpc_id, result=result)


async def _wait_for_messages(
    services: Services, channels: list[str], last: int, receive: ASGIReceive
) -> list[Message] | None:
    arrived: asyncio.Future[list[Message]] = asyncio.get_running_loop().create_future()

    def sink(messages: list[Message]) -> None:
        if not arrived.done():
            arrived.set_result(messages)

    subscriber = Subscriber(sink)
    services.hub.join(subscriber, channels, last)
    disconnect = asyncio.ensure_future(_until_disconnect(receive))
    try:
        subscriber.release(await services.history(channels, last))
        waiting: set[asyncio.Future[Any]] = {arrived, disconnect}
        done, _ = await asyncio.wait(waiting, timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        if disconnect in done and not arrived.done():
            return None
        return arrived.result() if arrived.done() else []
    finally:
        services.hub.leave(subscriber)
        disconnect.cancel()


async def _until_disconnect(receive: ASGIReceive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def read_rpc(
    scope: Mapping[str, Any], receive: ASGIReceive, send: ASGISend
) -> tuple[Any, dict[str, Any]] | None:
    """(id, params) of a JSON-RPC POST, or None once it was answered with an error."""
    if scope["method"] != "POST":
        await respond(
            send, 405, b"use POST with a JSON-RPC body\n", "text/plain", [(b"allow", b"POST")]
        )
        return None
    try:
        body = await _read_body(receive)
    except _TooLarge:
        await respond(
            send,
            413,
            b'{"error": "a JSON-RPC body is at most 1 MiB"}\n',
            extra=[(b"connection", b"close")],
        )
        return None
    try:
        request = json.loads(body) if body is not None else None
    except (ValueError, RecursionError):
        request = None
    params = request.get("params", {}) if isinstance(request, dict) else None
    if not isinstance(params, dict):
        await respond(send, 400, b'{"error": "expected a JSON-RPC body with params"}\n')
        return None
    return request.get("id") if isinstance(request, dict) else None, params


def headers_of(scope: Mapping[str, Any]) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


class _TooLarge(Exception):
    """A request body over MAX_BODY."""


async def _read_body(receive: ASGIReceive) -> bytes | None:
    """The whole body; None when the client went away; _TooLarge past MAX_BODY (the rest
    is not read: the connection closes after the answer)."""
    chunks, size = [], 0
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            return None
        chunk = event.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise _TooLarge
        chunks.append(chunk)
        if not event.get("more_body"):
            return b"".join(chunks)


def item(message: Message) -> dict[str, Any]:
    channel: Any = message.channel
    if protocol.is_record_channel(channel):
        channel = json.loads(channel)  # a list channel, as the client named it
    return {"id": message.id, "channel": channel, "message": json.loads(message.message)}


async def server_error(send: ASGISend, rpc_id: Any, message: str) -> None:
    """Odoo answers a route that fails with a JSON-RPC error, code 200."""
    await reply(
        send,
        rpc_id,
        error={
            "code": 200,
            "message": "Odoo Server Error",
            "data": {"name": "builtins.ValueError", "message": message, "arguments": [message]},
        },
    )


async def store_unavailable(send: ASGISend) -> None:
    await respond(
        send, 503, b'{"error": "session store unavailable"}\n', extra=[(b"retry-after", b"5")]
    )


async def reply(send: ASGISend, rpc_id: Any, **outcome: Any) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": rpc_id, **outcome}).encode()
    await respond(send, 200, body)


async def respond(
    send: ASGISend,
    status: int,
    body: bytes,
    content_type: str = "application/json",
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
