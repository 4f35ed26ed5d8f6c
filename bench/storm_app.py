"""The application of bench/storm.py: /db answers after one query through the request's
transaction (503 from the server when no connection can be had)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ["PATH_INFO"] == "/db":
        environ["prefork.db"].execute("SELECT 1")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
