"""The page the session benchmark asks for: /rw reads and writes the session, /plain is the
same page without touching it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ["PATH_INFO"] == "/rw":
        session = environ["prefork.session"]
        session["count"] = session.get("count", 0) + 1
        body = f"visit {session['count']}\n".encode()
    else:
        body = b"visit 0\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
