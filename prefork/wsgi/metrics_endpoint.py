"""GET /metrics: Prometheus' text format, for the addresses `metrics_allow` lists (403 for
the others). REMOTE_ADDR is the client's own behind a proxy with proxy_mode."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

from prefork.metrics import exposition

PATH = "/metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def networks(allow: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [
        ipaddress.ip_network(part.strip(), strict=False)
        for part in allow.split(",")
        if part.strip()
    ]


class MetricsEndpoint:
    """The WSGI application of PATH (see prefork/wsgi/routes.py)."""

    def __init__(self, allow: str) -> None:
        self.allowed = networks(allow)

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        if not self._allowed(environ.get("REMOTE_ADDR", "")):
            body = b"forbidden: this address is not in metrics_allow\n"
            status, content_type = "403 Forbidden", "text/plain; charset=utf-8"
        else:
            body, status, content_type = exposition(), "200 OK", CONTENT_TYPE
        start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]

    def _allowed(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.allowed)
