"""Reads and writes the request's session; reports which worker served it."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    session = environ["prefork.session"]
    query = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    path = environ["PATH_INFO"]
    if path == "/login":
        session["user"] = query["user"]
        session.rotate()
    elif path == "/logout":
        session.destroy()
    elif path == "/count":
        session["count"] = session.get("count", 0) + 1
    elif path == "/set":
        session[query["key"]] = query["value"]
    body = json.dumps(
        {
            "pid": os.getpid(),
            "session": dict(session) if path != "/none" else None,
            "scheme": environ["wsgi.url_scheme"],
        }
    ).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
