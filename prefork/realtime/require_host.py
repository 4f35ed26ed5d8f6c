"""The realtime port's Host check: an HTTP/1.1 request (or websocket handshake) without
exactly one valid Host gets 400 (RFC 9112 3.2), as from the HTTP workers' parser; uvicorn's
httptools protocol would pass it to the application. A websocket handshake with an
absolute-form target (`GET http://host/websocket`) is routed by the target's path, and
its authority is the Host the application sees (RFC 9112 3.2.2); uvicorn's websocket
protocol put the whole target in the scope's path.

    app = RequireHost(RealtimeApp(...))
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from prefork.http.host import target_authority, valid_host

ASGIApp = Callable[[Mapping[str, Any], Any, Any], Awaitable[None]]
_BODY = b"bad request: an HTTP/1.1 request needs one valid Host header\n"
_HEADERS = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", str(len(_BODY)).encode()),
    (b"connection", b"close"),
]
_ABSOLUTE = ("http://", "https://", "ws://", "wss://")
_DENIAL = "websocket.http.response"  # the ASGI extension for an HTTP answer to a handshake


def host_problem(scope: Mapping[str, Any]) -> bool:
    """True when the request's Host is missing (HTTP/1.1), repeated or invalid."""
    hosts = [value for name, value in scope.get("headers", ()) if name == b"host"]
    if not hosts:
        return bool(scope.get("http_version") == "1.1")
    return len(hosts) > 1 or not valid_host(hosts[0].decode("latin-1").strip(" \t"))


class RequireHost:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Mapping[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "websocket" and scope.get("path", "").lower().startswith(_ABSOLUTE):
            scope = _origin_form(scope)
        if kind in ("http", "websocket") and host_problem(scope):
            await (_refuse_http(send) if kind == "http" else _refuse_handshake(scope, send))
            return
        await self.app(scope, receive, send)


def _origin_form(scope: Mapping[str, Any]) -> Mapping[str, Any]:
    """The scope of an absolute-form target as if it came in origin form, with the
    target's authority as its only Host; an invalid authority leaves no Host (a 400)."""
    path: str = scope["path"]
    start = path.index("://") + 3
    authority = target_authority(path, start)
    slash = path.find("/", start)
    rest = path[slash:] if slash >= 0 else "/"
    headers = [(n, v) for n, v in scope.get("headers", ()) if n != b"host"]
    if authority is not None:
        headers.append((b"host", authority.encode("latin-1")))
    return {
        **scope,
        "path": rest,
        "raw_path": rest.encode("latin-1"),
        "headers": headers,
        "http_version": "1.1",
    }


async def _refuse_http(send: Any) -> None:
    await send({"type": "http.response.start", "status": 400, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})


async def _refuse_handshake(scope: Mapping[str, Any], send: Any) -> None:
    if _DENIAL not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": 1008})  # the server answers 403
        return
    await send({"type": "websocket.http.response.start", "status": 400, "headers": _HEADERS})
    await send({"type": "websocket.http.response.body", "body": _BODY})
