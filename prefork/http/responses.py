"""Status phrases, the Date header cache and the engine's own short responses."""

from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus

REASONS = {s.value: s.phrase for s in HTTPStatus}


class DateCache:
    """`Date: ...\\r\\n` formatted at most once a second (it is on every response)."""

    __slots__ = ("_line", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def line(self) -> bytes:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._line = f"Date: {formatdate(now, usegmt=True)}\r\n".encode("ascii")
            self._second = second
        return self._line


def error_response(status: int, message: str, date: bytes) -> bytes:
    """A complete plain-text response that closes the connection."""
    body = f"{status} {REASONS.get(status, 'Error')}: {message}\n".encode("latin-1", "replace")
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n"
    )
    return head.encode("latin-1") + date + b"\r\n" + body


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
