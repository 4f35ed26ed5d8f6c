"""A service a request needs is away for a moment (the session store): the server answers
503 with Retry-After, logs a line (at most one per 10 s, with a count of the others),
and the worker serves on."""

from __future__ import annotations

RETRY_AFTER = 5  # seconds
UNAVAILABLE_LOG_EVERY = 10.0  # seconds between two 503 lines of a process (the same outage)


class Unavailable(Exception):
    """Raised through the application; the message names the service."""


def response_bytes(exc: Unavailable) -> bytes:
    body = f"503 Service Unavailable: {exc}; try again shortly.\n".encode()
    return (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Retry-After: " + str(RETRY_AFTER).encode() + b"\r\nConnection: close\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
