"""prefork's own answers on the HTTP port, found in one step before the application's stack
(each pass-through middleware costs every request a call): /web/health, /metrics, and in
HTTP workers the requests meant for the realtime process (a request without an Upgrade
header, not under /longpolling/, costs one dict lookup and two tests here)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prefork.wsgi.handler import WSGIApp, direct
from prefork.wsgi.realtime_elsewhere import LONGPOLLING_PREFIX, RealtimeElsewhere, misrouted


class ServerRoutes:
    def __init__(
        self, app: WSGIApp, exact: dict[str, WSGIApp], elsewhere: RealtimeElsewhere | None
    ) -> None:
        self.app = direct(app)
        self.exact = exact
        self.elsewhere = elsewhere

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        own = self.exact.get(path)
        if own is not None:
            return own(environ, start_response)
        if (
            self.elsewhere is not None
            and ("HTTP_UPGRADE" in environ or path.startswith(LONGPOLLING_PREFIX))
            and misrouted(environ)
        ):
            return self.elsewhere(environ, start_response)
        return self.app(environ, start_response)
