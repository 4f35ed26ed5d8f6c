"""The realtime process's ASGI application: the routes, nothing else."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from prefork.realtime import longpolling, websocket
from prefork.realtime.longpolling import respond
from prefork.realtime.websocket import ASGIReceive, ASGISend, Services

WEBSOCKET_PATHS = ("/websocket", "/web/websocket")


def is_realtime_path(path: str) -> bool:
    """The paths the realtime service answers (threaded mode routes them to it)."""
    return (path.rstrip("/") in WEBSOCKET_PATHS or path == "/websocket/health"
            or path.startswith("/longpolling/"))


class RealtimeApp:
    def __init__(self, services: Services, database_ok: Any) -> None:
        self.services = services
        self.database_ok = database_ok  # () -> bool: the dispatcher is connected

    async def __call__(self, scope: Mapping[str, Any], receive: ASGIReceive,
                       send: ASGISend) -> None:
        kind, path = scope["type"], scope.get("path", "")
        if kind == "websocket":
            if path.rstrip("/") in WEBSOCKET_PATHS:
                await websocket.serve(self.services, scope, receive, send)
            else:
                await send({"type": "websocket.close", "code": 1008})
        elif kind == "http":
            await self._http(path, scope, receive, send)

    async def _http(self, path: str, scope: Mapping[str, Any], receive: ASGIReceive,
                    send: ASGISend) -> None:
        if path == "/longpolling/poll":
            await longpolling.serve(self.services, scope, receive, send)
        elif path == "/websocket/health":
            ok = self.database_ok()
            body = {"status": "pass" if ok else "fail", "bus_connected": ok,
                    "websockets": len(self.services.clients)}
            await respond(send, 200 if ok else 503, json.dumps(body).encode())
        elif path.rstrip("/") in WEBSOCKET_PATHS:
            await respond(send, 426, b"this endpoint speaks WebSocket only\n", "text/plain",
                          [(b"upgrade", b"websocket"), (b"connection", b"Upgrade")])
        else:
            await respond(send, 404, b"not found: the realtime port serves /websocket, "
                          b"/longpolling/poll and /websocket/health\n", "text/plain")
