"""A request stopped by one of its worker's limits: the exception raised into the
application, and the complete answer the client gets instead of a closed connection.

A browser sends a request again by itself when its connection closes without a response:
one click on a runaway page would cost a worker per attempt. Any complete response, even
an error, stops that, so the client gets one (unless the response had begun already), with
`Connection: close` and without Retry-After: sending it again would only hit the limit again.

The HTTP worker owns the alarm and rings it from its limit signals; the WSGI handler arms
it while the application runs and answers the client:

    alarm = LimitAlarm()
    signal.signal(signal.SIGPROF, lambda *_: alarm.ring(cpu_time(60)))
"""

from __future__ import annotations

import html
import json

from prefork.http.responses import REASONS

MiB = 1 << 20
# 504 for the time limits, as nginx answers for an upstream that did not answer in time;
# 503 for memory: the server lacked the resources for this request.
TIME_STATUS = 504
MEMORY_STATUS = 503


class LimitExceeded(BaseException):
    """Not an Exception: the application's `except Exception` must not swallow it."""

    def __init__(self, setting: str, status: int, message: str) -> None:
        super().__init__(message)
        self.setting = setting
        self.status = status
        self.message = message


def cpu_time(seconds: int) -> LimitExceeded:
    return LimitExceeded(
        "limit_time_cpu",
        TIME_STATUS,
        f"This request used more than {seconds} s of CPU time (limit_time_cpu) and was stopped.",
    )


def real_time(seconds: int) -> LimitExceeded:
    return LimitExceeded(
        "limit_time_real",
        TIME_STATUS,
        f"This request ran for more than {seconds} s (limit_time_real) and was stopped.",
    )


def memory(limit: int) -> LimitExceeded:
    return LimitExceeded(
        "limit_memory_hard",
        MEMORY_STATUS,
        f"This request took its worker's memory above {limit / MiB:.0f} MiB "
        "(limit_memory_hard) and was stopped.",
    )


class LimitAlarm:
    """Whether a limit's signal may raise into the running request, and the first limit
    that rang.

    `armed` is set only while the application runs (and writes its response): raised
    anywhere else, in the worker's own loop or in its logging, the exception would break
    the worker instead of the request. A limit that rings outside still ends the worker,
    after the current request.
    """

    __slots__ = ("armed", "fired")

    def __init__(self) -> None:
        self.armed = False
        self.fired: LimitExceeded | None = None

    def ring(self, exceeded: LimitExceeded) -> None:
        """From a signal handler: record the limit, interrupt the application if it runs."""
        if self.fired is None:
            self.fired = exceeded
        if self.armed:
            raise exceeded


def answer(exceeded: LimitExceeded, accept: str, date: bytes) -> bytes:
    """The complete response: JSON when Accept prefers it to HTML, else a short page."""
    status = exceeded.status
    reason = REASONS.get(status, "Error")
    if prefers_json(accept):
        content_type = "application/json"
        body = json.dumps(
            {"error": {"status": status, "limit": exceeded.setting, "message": exceeded.message}}
        ).encode()
    else:
        content_type = "text/html; charset=utf-8"
        title = f"{status} {reason}"
        body = (
            f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title>'
            f"</head>\n<body><h1>{title}</h1>\n<p>{html.escape(exceeded.message)}</p>\n"
            "</body></html>\n"
        ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n"
    )
    return head.encode("latin-1") + date + b"\r\n" + body


def prefers_json(accept: str) -> bool:
    """Whether an Accept header ranks application/json above text/html. Wildcards rank
    neither: `*/*` alone (curl, fetch) gets the page."""
    ranks = {"application/json": 0.0, "text/html": 0.0}
    for item in accept.split(","):
        media, _, params = item.partition(";")
        media = media.strip().lower()
        if media in ranks:
            ranks[media] = max(ranks[media], _quality(params))
    return ranks["application/json"] > ranks["text/html"]


def _quality(params: str) -> float:
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return min(max(float(value), 0.0), 1.0)
            except ValueError:
                return 0.0
    return 1.0
