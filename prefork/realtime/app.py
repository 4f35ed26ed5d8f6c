"""The realtime process's ASGI application: the routes, nothing else."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from prefork.realtime import longpolling, side_routes, websocket
from prefork.realtime.longpolling import respond
from prefork.realtime.websocket import ASGIReceive, ASGISend, Services

WEBSOCKET_PATHS = ("/websocket", "/web/websocket")
SIDE_PATHS = (
    "/websocket/health",
    "/websocket/peek_notifications",
    "/websocket/update_bus_presence",
)


def is_realtime_path(path: str) -> bool:
    """The paths the realtime service answers (threaded mode routes them to it)."""
    return (
        path.rstrip("/") in WEBSOCKET_PATHS
        or path in SIDE_PATHS
        or path.startswith("/longpolling/")
    )


class RealtimeApp:
    def __init__(
        self, services: Services, database_ok: Callable[[], bool], draining: Callable[[], bool]
    ) -> None:
        self.services = services
        self.database_ok = database_ok  # the dispatcher is connected
        self.draining = draining  # a stop is announced (drain_delay)

    async def __call__(
        self, scope: Mapping[str, Any], receive: ASGIReceive, send: ASGISend
    ) -> None:
        kind, path = scope["type"], scope.get("path", "")
        if kind == "websocket":
            if path.rstrip("/") in WEBSOCKET_PATHS:
                await websocket.serve(self.services, scope, receive, send)
            else:
                await send({"type": "websocket.close", "code": 1008})
        elif kind == "http":
            await self._http(path, scope, receive, send)

    async def _http(
        self, path: str, scope: Mapping[str, Any], receive: ASGIReceive, send: ASGISend
    ) -> None:
        services = self.services
        if path == "/longpolling/poll":
            await longpolling.serve(services, scope, receive, send)
        elif path == "/websocket/peek_notifications":
            await side_routes.peek_notifications(services, scope, receive, send)
        elif path == "/websocket/update_bus_presence":
            await side_routes.presence(services, scope, receive, send, anonymous_result={})
        elif path == "/longpolling/im_status":
            await side_routes.presence(services, scope, receive, send, anonymous_result=None)
        elif path == "/websocket/health":
            await side_routes.health(services, self.database_ok(), self.draining(), send)
        elif path == "/longpolling/health":
            await side_routes.odoo_health(self.draining(), send)
        elif path.rstrip("/") in WEBSOCKET_PATHS:
            await respond(
                send,
                426,
                b"this endpoint speaks WebSocket only\n",
                "text/plain",
                [
                    (b"upgrade", b"websocket"),
                    (b"connection", b"Upgrade"),
                    (b"sec-websocket-version", b"13"),
                ],
            )
        else:
            await respond(
                send,
                404,
                b"not found: the realtime port serves /websocket, "
                b"/longpolling/poll and the bus's side routes\n",
                "text/plain",
            )
