"""Build the PEP 3333 environ of a request, applying X-Forwarded-* only in proxy mode."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from prefork.http.request import Request

_MAX_CACHED_KEYS = 512
_SPECIAL = {"CONTENT-TYPE": "CONTENT_TYPE", "CONTENT-LENGTH": None}


class EnvironBuilder:
    """Holds what is the same for every request of a server, and fills in the rest."""

    def __init__(
        self,
        server_name: str,
        server_port: int,
        proxy_mode: bool,
        untrusted_proxy: Callable[[str], None] | None = None,
    ) -> None:
        self._proxy_mode = proxy_mode
        self._untrusted_proxy = untrusted_proxy  # told once: X-Forwarded-For, proxy_mode off
        self._keys: dict[str, str | None] = dict(_SPECIAL)
        self._base: dict[str, Any] = {
            "SERVER_NAME": server_name,
            "SERVER_PORT": str(server_port),
            "SCRIPT_NAME": "",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
        }

    def configure(self, **flags: bool) -> None:
        """Set wsgi.multithread / wsgi.multiprocess for the serving mode."""
        for name, value in flags.items():
            self._base[f"wsgi.{name}"] = value

    def constant(self, key: str, value: Any) -> None:
        """Give every request's environ `key`, with the same value."""
        self._base[key] = value

    def build(self, request: Request, peer: tuple[str, int]) -> dict[str, Any]:
        """`peer` is ("", 0) for a client on a Unix socket, which has no address (as
        gunicorn's REMOTE_ADDR); proxy_mode gives the forwarded one."""
        environ = self._base.copy()
        path = request.path
        environ["REQUEST_METHOD"] = request.method
        environ["PATH_INFO"] = unquote_to_bytes(path).decode("latin-1") if "%" in path else path
        environ["QUERY_STRING"] = request.query
        environ["RAW_URI"] = environ["REQUEST_URI"] = request.target
        environ["SERVER_PROTOCOL"] = request.version
        environ["REMOTE_ADDR"] = peer[0]
        environ["REMOTE_PORT"] = str(peer[1]) if peer[1] else ""  # none: a Unix socket
        environ["CONTENT_LENGTH"] = str(request.content_length) if request.content_length else ""
        environ["wsgi.input"] = request.body
        environ["prefork.headers"] = request.headers
        keys = self._keys
        for name, value in request.headers:
            key = keys.get(name, "")
            if key == "":
                key = "HTTP_" + name.replace("-", "_")
                if len(keys) < _MAX_CACHED_KEYS:  # clients choose names: bound the cache
                    keys[name] = key
            if key is None:
                continue
            if key in environ:
                value = environ[key] + ("; " if key == "HTTP_COOKIE" else ",") + value
            environ[key] = value
        if request.authority:  # absolute-form: the target's authority, not the Host header
            environ["HTTP_HOST"] = request.authority
        if self._proxy_mode:
            _apply_forwarded(environ)
        elif self._untrusted_proxy is not None and "HTTP_X_FORWARDED_FOR" in environ:
            tell, self._untrusted_proxy = self._untrusted_proxy, None
            tell(peer[0])
        return environ


def _last(value: str) -> str:
    """The value added by our own proxy: the last one, which the client cannot forge."""
    return value.rsplit(",", 1)[-1].strip()


def _apply_forwarded(environ: dict[str, Any]) -> None:
    # It is a security issue to trust these when no proxy strips them: proxy_mode only.
    forwarded_for = environ.get("HTTP_X_FORWARDED_FOR")
    if forwarded_for:
        environ["prefork.original_remote_addr"] = environ["REMOTE_ADDR"]
        environ["REMOTE_ADDR"] = _last(forwarded_for)
    proto = environ.get("HTTP_X_FORWARDED_PROTO")
    if proto and _last(proto).lower() in ("http", "https"):
        environ["wsgi.url_scheme"] = _last(proto).lower()
    host = environ.get("HTTP_X_FORWARDED_HOST")
    if host:
        environ["HTTP_HOST"] = _last(host)
