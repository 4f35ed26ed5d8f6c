"""prefork's own answers on the HTTP port, found in one step before the application's stack
(each pass-through middleware costs every request a call): /web/health, /metrics, and in
HTTP workers the requests meant for the realtime process. Also tells applications where
their pages should open websockets: environ["prefork.realtime_port"] (absent in threaded
mode and behind a proxy, where /websocket is on the same origin)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prefork.wsgi.handler import WSGIApp
from prefork.wsgi.realtime_elsewhere import RealtimeElsewhere, misrouted


class ServerRoutes:
    def __init__(self, app: WSGIApp, exact: dict[str, WSGIApp],
                 elsewhere: RealtimeElsewhere | None, realtime_port: int) -> None:
        self.app = app
        self.exact = exact
        self.elsewhere = elsewhere
        self.realtime_port = realtime_port

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        own = self.exact.get(environ["PATH_INFO"])
        if own is not None:
            return own(environ, start_response)
        if self.elsewhere is not None and misrouted(environ):
            return self.elsewhere(environ, start_response)
        if self.realtime_port:
            environ["prefork.realtime_port"] = self.realtime_port
        return self.app(environ, start_response)
