"""hello.py plus /burn?s=N, a CPU-bound request, for the busy-worker latency benchmark."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from hello import app as hello


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ["PATH_INFO"] == "/burn":
        seconds = float(environ["QUERY_STRING"].partition("=")[2] or 1)
        deadline = time.process_time() + seconds
        while time.process_time() < deadline:
            pass
    return hello(environ, start_response)
