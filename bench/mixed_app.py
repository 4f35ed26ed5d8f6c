"""The application of bench/mixed.py: a fast endpoint, a CPU-bound one and a large body.

- `/` answers at once (hello world);
- `/slow?s=0.3` burns that much CPU time first (a report, a big form);
- `/big` is an 8 MiB body built for each request, as a framework builds a download or an
  export, returned in one piece.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from hello import app as hello

BIG_SIZE = 8 << 20


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if path == "/slow":
        seconds = float(environ["QUERY_STRING"].partition("=")[2] or 0.3)
        deadline = time.process_time() + seconds
        while time.process_time() < deadline:
            pass
    elif path == "/big":
        body = b"x" * BIG_SIZE
        start_response(
            "200 OK",
            [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))],
        )
        return [body]
    return hello(environ, start_response)
