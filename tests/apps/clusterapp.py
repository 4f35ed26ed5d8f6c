"""The application of the multi-host test: sessionapp's pages, and busapp's /publish (a
message published in the request's transaction)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from tests.apps import busapp, sessionapp


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ["PATH_INFO"] == "/publish":
        return busapp.app(environ, start_response)
    return sessionapp.app(environ, start_response)
