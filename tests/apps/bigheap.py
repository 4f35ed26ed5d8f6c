"""A preloaded application holding a large heap of small objects the garbage collector
tracks; /collect runs a full collection in the worker and answers with the worker's
private memory (USS, bytes): what a collection copied of the pages it shares with the
master."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable
from typing import Any

import psutil

HEAP_OBJECTS = 400_000  # small lists, each tracked by the collector (about 40 MB)
heap = [[n] for n in range(HEAP_OBJECTS)]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ["PATH_INFO"] == "/collect":
        gc.collect()
    body = str(psutil.Process().memory_full_info().uss).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
