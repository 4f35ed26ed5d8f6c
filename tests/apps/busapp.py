"""Publishes on the bus from an HTTP worker, in the request's transaction."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from prefork import bus


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    query = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    if environ["PATH_INFO"] == "/publish":
        size = int(environ.get("CONTENT_LENGTH") or 0)
        message = json.loads(environ["wsgi.input"].read(size) or b"{}")
        bus.publish(query["channel"], message, db=environ["prefork.db"])
        if query.get("fail"):
            raise RuntimeError("rolled back after publishing")
        time.sleep(float(query.get("hold", 0)))  # the commit comes after the app returns
    body = json.dumps({"pid": os.getpid()}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def authenticate(cookies: Mapping[str, str], headers: Mapping[str, str]) -> Any:
    """The session id is the identity; none without a cookie, or when it is listed in
    $BUS_EXPIRED_FILE."""
    session = cookies.get("session_id", "")
    expired = Path(os.environ.get("BUS_EXPIRED_FILE", "/nonexistent"))
    if session and expired.exists() and session in expired.read_text().split():
        return None
    return session or None


def channels(identity: Any, requested: list[str]) -> list[str]:
    """Channels starting with 'private.' only for the identity 'admin'; record channels
    for every identity but 'visitor' (the server itself keeps them from anonymous
    clients). The identity 'crash' makes it raise, as a buggy hook would."""
    if identity == "crash":
        raise RuntimeError("a bug in the bus_channels hook")
    return [
        c
        for c in requested
        if not (c.startswith("private.") and identity != "admin")
        and not (c.startswith("[") and identity == "visitor")
    ]
