"""The bus's small HTTP routes that Odoo's clients call besides the websocket and the poll.

Odoo 16-18 `addons/bus/controllers/websocket.py`: /websocket/health,
/websocket/peek_notifications (the bus service's fallback and its first poll),
/websocket/update_bus_presence; Odoo 15 `addons/bus/controllers/main.py`:
/longpolling/health, /longpolling/im_status. Presence (bus.presence, res.partner.im_status)
lives in an Odoo database, which prefork does not have: a signed-in client is told so with
a JSON-RPC error instead of a made-up answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from prefork.realtime import protocol
from prefork.realtime.auth import Anonymous
from prefork.realtime.longpolling import (
    headers_of,
    item,
    read_rpc,
    reply,
    respond,
    server_error,
    store_unavailable,
)
from prefork.realtime.protocol import Ignored
from prefork.realtime.websocket import ASGIReceive, ASGISend, Services
from prefork.sessions.stores import StoreUnavailable

NO_STORE = [(b"cache-control", b"no-store")]
SESSION_EXPIRED = {
    "code": 100,
    "message": "Odoo Session Expired",
    "data": {
        "name": "odoo.http.SessionExpiredException",
        "message": "Session expired",
        "arguments": ["Session expired"],
    },
}
NO_PRESENCE = {
    "code": 200,
    "message": "Not available",
    "data": {
        "name": "prefork.realtime.NotAvailable",
        "arguments": [],
        "message": "prefork keeps no presence: it lives in an Odoo database",
    },
}


async def odoo_health(draining: bool, send: ASGISend) -> None:
    """Odoo 15's /longpolling/health answer; 503 and "draining" while a stop is announced
    (drain_delay), as /web/health."""
    if draining:
        await respond(send, 503, b'{"status": "draining"}', extra=NO_STORE)
    else:
        await respond(send, 200, b'{"status": "pass"}', extra=NO_STORE)


async def health(services: Services, database_ok: bool, draining: bool, send: ASGISend) -> None:
    """Odoo's {"status": "pass"}, with what prefork knows: 503 and "fail" while the bus has
    no database, 503 and "draining" while a stop is announced (drain_delay): a load
    balancer then sends clients elsewhere."""
    status = "draining" if draining else "pass" if database_ok else "fail"
    body = {"status": status, "bus_connected": database_ok, "websockets": len(services.clients)}
    await respond(send, 200 if status == "pass" else 503, json.dumps(body).encode(), extra=NO_STORE)


async def peek_notifications(
    services: Services, scope: Mapping[str, Any], receive: ASGIReceive, send: ASGISend
) -> None:
    """Odoo 16+ `WebsocketController.peek_notifications`: string channels only, the bus's
    own channels added; {"channels": [...], "notifications": [{"id", "message"}]}."""
    request = await read_rpc(scope, receive, send)
    if request is None:
        return
    rpc_id, params = request
    raw = params.get("channels")
    try:
        if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
            raise Ignored("bus.Bus only string channels are allowed.")
        channels, last = protocol.parse_subscription(params)
        identity = await services.gate.connect(headers_of(scope))
    except Ignored as bad:
        await server_error(send, rpc_id, str(bad))
        return
    except StoreUnavailable:
        await store_unavailable(send)
        return
    allowed = await services.gate.allowed(identity, channels)
    found = await services.history(allowed, services.starting_point(last))
    notifications = [{"id": m.id, "message": item(m)["message"]} for m in found]
    await reply(send, rpc_id, result={"channels": allowed, "notifications": notifications})


async def presence(
    services: Services,
    scope: Mapping[str, Any],
    receive: ASGIReceive,
    send: ASGISend,
    anonymous_result: Any,
) -> None:
    """/longpolling/im_status (Odoo 15, auth="user": an anonymous client's session has
    expired) and /websocket/update_bus_presence (Odoo 16+: a no-op `{}` for the public
    user, `anonymous_result`)."""
    request = await read_rpc(scope, receive, send)
    if request is None:
        return
    try:
        identity = await services.gate.connect(headers_of(scope))
    except StoreUnavailable:
        identity = Anonymous()
    if not isinstance(identity, Anonymous):
        await reply(send, request[0], error=NO_PRESENCE)
    elif anonymous_result is None:
        await reply(send, request[0], error=SESSION_EXPIRED)
    else:
        await reply(send, request[0], result=anonymous_result)
