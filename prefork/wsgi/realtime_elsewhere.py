"""HTTP workers answer WebSocket upgrades and long-polling with directions to the realtime
process, instead of passing them to the application (Odoo answers them with a traceback,
odoo/odoo#106339): the client gets a 400 that names the port to use and the nginx location
that routes there."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from prefork.addresses import Address
from prefork.quiet_log import QuietLog

log = logging.getLogger("prefork.worker")

WARN_EVERY = 60.0  # seconds between two log lines about misrouted clients, per worker
LONGPOLLING_PREFIX = "/longpolling/"


def directions(realtime: Address, http: Address) -> bytes:
    # nginx names a Unix socket in proxy_pass between "unix:" and ":".
    target = f"unix:{realtime.path}:" if realtime.unix else f"127.0.0.1:{realtime.port}"
    return f"""\
WebSocket and long-polling requests are served by prefork's realtime process on \
{_where(realtime)}, not by the HTTP workers on {_where(http)}.
Connect to {_where(realtime)}, or route these paths to it in nginx:

    location /websocket {{
        proxy_pass http://{target};
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
        proxy_set_header Host $host;
        proxy_read_timeout 3600s;
    }}

(the same for /web/websocket, and /longpolling for clients of Odoo 15 and older).
""".encode()


def _where(address: Address) -> str:
    return f"the Unix socket {address.path}" if address.unix else f"port {address.port}"


def misrouted(environ: dict[str, Any]) -> bool:
    """A request meant for the realtime process."""
    path: str = environ["PATH_INFO"]
    return environ.get("HTTP_UPGRADE", "").lower() == "websocket" or path.startswith(
        LONGPOLLING_PREFIX
    )


class RealtimeElsewhere:
    """The WSGI application of misrouted() requests (see prefork/wsgi/routes.py)."""

    def __init__(self, realtime: Address, http: Address) -> None:
        self.body = directions(realtime, http)
        self.quiet = QuietLog(log, WARN_EVERY)

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        upgrade = environ.get("HTTP_UPGRADE", "").lower() == "websocket"
        self.quiet.warning(
            "%s %s reached an HTTP worker: route it to the realtime port "
            "(see the response sent to the client)",
            "WebSocket upgrade" if upgrade else "long-polling request",
            environ.get("PATH_INFO"),
        )
        start_response(
            "400 Bad Request",
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(self.body))),
                ("Connection", "close"),
            ],
        )
        return [self.body]
