"""Long-polling for Odoo <= 15 bus clients: POST /longpolling/poll with a JSON-RPC body
{"params": {"channels": [...], "last": N}}. Answers at once when messages above `last`
exist, else waits for the first ones up to TIMEOUT seconds, then answers an empty list."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from prefork.bus.store import Message, requested_channels
from prefork.realtime.hub import Subscriber
from prefork.realtime.websocket import ASGIReceive, ASGISend, Services
from prefork.sessions.stores import StoreUnavailable

TIMEOUT = 50.0
MAX_BODY = 1 << 20


async def serve(services: Services, scope: Mapping[str, Any], receive: ASGIReceive,
                send: ASGISend) -> None:
    if scope["method"] != "POST":
        await respond(send, 405, b"use POST with a JSON-RPC body\n", "text/plain",
                      [(b"allow", b"POST")])
        return
    body = await _read_body(receive)
    request = _parse(body) if body is not None else None
    if request is None:
        await respond(send, 400, b'{"error": "expected a JSON-RPC body with params.channels '
                      b'(a list) and params.last (a number)"}\n')
        return
    rpc_id, channels, last = request
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    try:
        identity = await services.gate.identify(headers)
    except StoreUnavailable:
        await respond(send, 503, b'{"error": "session store unavailable"}\n',
                      extra=[(b"retry-after", b"5")])
        return
    if identity is None:
        await _reply(send, rpc_id, error={"code": 100, "message": "Session Expired",
                                          "data": {"name": "SessionExpiredException"}})
        return
    allowed = await services.gate.allowed(identity, channels)
    messages = await _wait_for_messages(services, allowed, last, receive)
    if messages is None:
        return  # the client went away
    await _reply(send, rpc_id, result=[_item(m) for m in messages])


async def _wait_for_messages(services: Services, channels: list[str], last: int,
                             receive: ASGIReceive) -> list[Message] | None:
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
        done, _ = await asyncio.wait(waiting, timeout=TIMEOUT,
                                     return_when=asyncio.FIRST_COMPLETED)
        if disconnect in done and not arrived.done():
            return None
        return arrived.result() if arrived.done() else []
    finally:
        services.hub.leave(subscriber)
        disconnect.cancel()


async def _until_disconnect(receive: ASGIReceive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _read_body(receive: ASGIReceive) -> bytes | None:
    chunks, size = [], 0
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            return None
        chunk = event.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not event.get("more_body"):
            return b"".join(chunks)


def _parse(body: bytes) -> tuple[Any, list[str], int] | None:
    try:
        request = json.loads(body)
        params = request["params"]
        channels, last = params["channels"], params.get("last", 0) or 0
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(channels, list) or not isinstance(last, int):
        return None
    return request.get("id"), requested_channels(channels), last


def _item(message: Message) -> dict[str, Any]:
    channel: Any = message.channel
    if channel.startswith("["):
        channel = json.loads(channel)  # a list channel, as the client named it
    return {"id": message.id, "channel": channel, "message": json.loads(message.message)}


async def _reply(send: ASGISend, rpc_id: Any, **outcome: Any) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": rpc_id, **outcome}).encode()
    await respond(send, 200, body)


async def respond(send: ASGISend, status: int, body: bytes,
                  content_type: str = "application/json",
                  extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", content_type.encode()),
               (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
