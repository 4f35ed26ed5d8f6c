"""Run a WSGI application for one request and write its response (PEP 3333).

Framing: the application's Content-Length when it gives one; a one-item list or tuple gets
one computed; otherwise HTTP/1.1 responses are chunked and HTTP/1.0 ones end with the
connection. Headers and the first body chunk leave in one send. A regular file returned in
wsgi.file_wrapper has a Content-Length (its size from its position, or the application's,
never exceeded) and goes with sendfile(2) after the headers.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
import types
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar, cast

from prefork.access_log import AccessLog
from prefork.http.connection import ClientGone, Connection
from prefork.http.request import Request
from prefork.http.responses import DateCache
from prefork.quiet_log import QuietLog
from prefork.wsgi.environ import EnvironBuilder
from prefork.wsgi.file_wrapper import FileBody, FileWrapper, file_body
from prefork.wsgi.limit_exceeded import LimitAlarm, LimitExceeded, answer
from prefork.wsgi.unavailable import UNAVAILABLE_LOG_EVERY, Unavailable, response_bytes

log = logging.getLogger("prefork.wsgi")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# Sees each request's environ and its response before the application does.
RequestHook = Callable[[dict[str, Any], "Response"], None]
C = TypeVar("C", bound=Callable[..., Any])
_NO_BODY_STATUS = frozenset({204, 304})
_MAX_CACHED = 512  # applications choose these strings: bound the caches of them
# Status lines and header names seen so far, and what they mean to the framing: reading
# them from a dict costs less than int(status[:3]) and name.lower() on every response.
_status_codes: dict[str, int] = {}
_LENGTH, _CONNECTION, _DATE = 1, 2, 3
_header_kinds: dict[str, int] = {}
ANSWER_TIMEOUT = 1.0  # seconds to send a limit's answer: the worker exits right after
_INTERNAL_ERROR = (
    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 26\r\nConnection: close\r\n\r\n500 Internal Server Error\n"
)


def direct(app: C) -> C:
    """`app` itself, or for an instance of a class with a Python `__call__`, that method
    bound: CPython calls a bound method in about half the time of a callable instance (no
    slot lookup), and middlewares are called once per request each."""
    call = inspect.getattr_static(type(app), "__call__", None)
    instance: Any = app
    return cast(C, instance.__call__) if isinstance(call, types.FunctionType) else app


class ResponseError(Exception):
    """The application broke the WSGI contract; logged with its traceback."""


class Response:
    """The response side of one request: start_response, write() and the framing.

    No __slots__: what most responses never change lives in class defaults, so making one
    sets five attributes instead of thirteen (this runs for every request).
    """

    status = 0
    head: bytes | None = None
    headers_sent = False
    length: int | None = None
    chunked = False
    bytes_sent = 0
    own_date = False  # the application sent a Date header: prefork adds none
    # A streamed body left to draw as a slow client reads, and what the application
    # returned (closed once the body has been drawn).
    rest: Iterator[bytes] | None = None
    file: FileBody | None = None  # or a file sent with sendfile(2), as the client reads
    result: Iterable[bytes] | None = None
    # Headers to add at start_response, set by whoever needs to (a session that the
    # application touched); None for most requests, which then pay nothing.
    header_hook: Callable[[], list[tuple[str, str]]] | None = None

    def __init__(
        self, conn: Connection, request: Request, keep_alive: bool, timeout: float, date: DateCache
    ) -> None:
        self.conn = conn
        self.date = date
        self.request = request
        self.keep_alive = keep_alive
        self.timeout = timeout
        self.no_body = request.method == "HEAD"

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            if self.headers_sent:
                raise exc_info[1].with_traceback(exc_info[2])
        elif self.head is not None:
            raise ResponseError("start_response called twice without exc_info")
        code = _status_codes.get(status)
        if code is None:
            code = _status_code(status)
        self.status = code
        if code < 200 or code in _NO_BODY_STATUS:
            self.no_body = True
        lines = [f"HTTP/1.1 {status}\r\n"]
        for name, value in headers:
            kind = _header_kinds.get(name)
            if kind is None:
                kind = _header_kind(name)
            if kind:  # Content-Length, the application's own Date, the rare Connection
                if kind == _LENGTH:
                    self.length = int(value)
                elif kind == _DATE:
                    self.own_date = True
                elif "close" in value.lower():
                    self.keep_alive = False
                    continue
            lines.append(f"{name}: {value}\r\n")
        if self.header_hook is not None:
            lines += [f"{name}: {value}\r\n" for name, value in self.header_hook()]
        head = "".join(lines).encode("latin-1")
        # Every line ends with CRLF; any other CR or LF would split the response. (Counted
        # in bytes: str.count costs twice as much, in argument parsing.)
        if head.count(b"\n") != len(lines) or head.count(b"\r") != len(lines):
            raise ResponseError("a status or header contains a line break")
        self.head = head
        return self.write

    def _framing(self, body_known: int | None) -> bytes:
        """The headers prefork adds: the body's length or chunking, and the connection's
        fate when it differs from HTTP/1.1's default."""
        extra = []
        bodiless_status = self.status in _NO_BODY_STATUS or self.status < 200
        if self.length is None and not bodiless_status:
            if body_known is not None:
                self.length = body_known
                extra.append(f"Content-Length: {body_known}\r\n")
            elif self.no_body:
                pass  # HEAD: nothing follows, so nothing needs framing
            elif self.request.version == "HTTP/1.1":
                self.chunked = True
                extra.append("Transfer-Encoding: chunked\r\n")
            else:
                self.keep_alive = False
        if not self.keep_alive:
            extra.append("Connection: close\r\n")
        elif self.request.version == "HTTP/1.0":
            extra.append("Connection: keep-alive\r\n")
        return "".join(extra).encode("latin-1")

    def write(self, data: bytes, *, known_total: int | None = None) -> None:
        prefix = b""
        if not self.headers_sent:
            if self.head is None:
                raise ResponseError("write() before start_response")
            self.headers_sent = True
            date = b"" if self.own_date else self.date.line()
            if self.length is not None and self.keep_alive and self.request.version == "HTTP/1.1":
                prefix = self.head + date + b"\r\n"  # most: nothing to add
            else:
                prefix = self.head + self._framing(known_total) + date + b"\r\n"
        if self.no_body:
            data = b""
        elif self.chunked and data:
            data = b"%x\r\n%b\r\n" % (len(data), data)
        elif self.length is not None and self.bytes_sent + len(data) > self.length:
            raise ResponseError("application sent more than its Content-Length")
        self.bytes_sent += len(data)
        if prefix or data:
            self.conn.send(prefix + data if prefix else data, self.timeout)

    def finish(self) -> None:
        if not self.headers_sent:
            self.write(b"", known_total=0)
        if self.chunked:
            self.conn.send(b"0\r\n\r\n", self.timeout)
        elif self.length is not None and not self.no_body and self.bytes_sent < self.length:
            log.error(
                "application sent %d of %d bytes; closing the connection",
                self.bytes_sent,
                self.length,
            )
            self.keep_alive = False


class WSGIHandler:
    """Serves requests with one application; safe to share between threads."""

    def __init__(
        self,
        app: WSGIApp,
        environ: EnvironBuilder,
        date: DateCache,
        *,
        send_timeout: float,
        access_log: AccessLog | None,
        draining: Callable[[], bool],
        metrics: Any = None,
        request_hooks: Sequence[RequestHook] = (),
        alarm: LimitAlarm | None = None,
    ) -> None:
        self.app = direct(app)
        # Not middlewares: one wrapping start_response costs every request a call.
        self.request_hooks = tuple(direct(hook) for hook in request_hooks)
        self.metrics = metrics  # prefork.metrics.Metrics, or None when metrics are off
        self.environ = environ
        self.date = date
        self.send_timeout = send_timeout
        self.access_log = access_log  # prefork.access_log's writer, None: no access log
        self.unavailable = QuietLog(log, UNAVAILABLE_LOG_EVERY)  # a 503 per request: Redis away
        self.draining = draining
        self.memory_errors = 0
        # An HTTP worker's: its limits' signals may interrupt the application (threaded
        # mode has none, a thread cannot be interrupted).
        self.alarm = alarm

    def serve(self, conn: Connection, request: Request, started: float = 0.0) -> bool:
        """Answer one request; True when the connection may carry another one. `started`
        is the monotonic time the caller began it at, if it read the clock already.

        When the client reads slower than the application answers (and the process keeps
        responses for slow readers), the rest of the response is left in `conn.sending`
        for the event loop, and the request is logged once its client has it all."""
        if not started and (self.access_log is not None or self.metrics is not None):
            started = time.monotonic()
        keep_alive = request.keep_alive and not self.draining()
        response = Response(conn, request, keep_alive, self.send_timeout, self.date)
        try:
            if self.alarm is None:
                self._run_app(response, request, conn)
            else:
                self._run_interruptible(response, request, conn, self.alarm)
            if conn.unsent or response.rest is not None or response.file is not None:
                conn.sending = _Rest(self, conn, request, response, started)
                return response.keep_alive  # the loop sends the rest as the client reads
        except LimitExceeded as exc:
            self._stopped(conn, request, response, exc)
        except ClientGone:
            response.keep_alive = False
        except Unavailable as exc:
            self.unavailable.warning("503 for %s %s: %s", request.method, request.target, exc)
            response.keep_alive = False
            if not response.headers_sent:
                response.status = 503
                _try_send(conn, response_bytes(exc))
        except Exception as exc:
            if self.alarm is not None and self.alarm.fired is not None:
                # Raised while the application unwound from its limit (a rollback that
                # failed): the limit is what the client must hear about.
                self._stopped(conn, request, response, self.alarm.fired)
            else:
                self._failed(conn, request, response, exc)
        self.answered(conn, request, response, started)
        return response.keep_alive

    def answered(
        self, conn: Connection, request: Request, response: Response, started: float
    ) -> None:
        """Count and log a request whose response has ended (sent, or cut short)."""
        conn.served += 1
        if started:  # read when the request is timed: logged or measured
            elapsed = time.monotonic() - started
            if self.metrics is not None:
                self.metrics.request(response.status, elapsed)
            if self.access_log is not None:
                self.access_log.write(
                    conn.peer[0] or "-",
                    request.method,
                    request.target,
                    request.version,
                    response.status,
                    response.bytes_sent,
                    elapsed,
                )

    def _failed(
        self, conn: Connection, request: Request, response: Response, exc: Exception
    ) -> None:
        if isinstance(exc, MemoryError):
            self.memory_errors += 1
        log.exception("error serving %s %s", request.method, request.target)
        response.keep_alive = False
        if not response.headers_sent:
            response.status = 500
            _try_send(conn, _INTERNAL_ERROR)

    def _stopped(
        self, conn: Connection, request: Request, response: Response, exc: LimitExceeded
    ) -> None:
        """The request was stopped by a limit: the client gets the limit's answer unless
        its response had begun (then the connection just closes)."""
        log.error("%s %s stopped: %s", request.method, request.target, exc.message)
        response.keep_alive = False
        if not response.headers_sent:
            response.status = exc.status
            accept = next((value for name, value in request.headers if name == "ACCEPT"), "")
            conn.send_final(answer(exc, accept, self.date.line()), ANSWER_TIMEOUT)

    def _run_interruptible(
        self, response: Response, request: Request, conn: Connection, alarm: LimitAlarm
    ) -> None:
        alarm.armed = True
        try:
            self._run_app(response, request, conn)
        finally:
            alarm.armed = False

    def _run_app(self, response: Response, request: Request, conn: Connection) -> None:
        environ = self.environ.build(request, conn.peer)
        for hook in self.request_hooks:
            hook(environ, response)
        result = self.app(environ, response.start_response)
        try:
            if isinstance(result, (list, tuple)) and len(result) == 1:
                response.write(result[0], known_total=len(result[0]))
                if response.bytes_sent != response.length:  # HEAD, or a short body
                    response.finish()
            elif type(result) is FileWrapper and _sends_file(response, conn, result):
                return
            else:
                chunks = iter(result)
                for chunk in chunks:
                    if chunk:
                        response.write(chunk)
                        if conn.unsent > conn.ahead:  # a slow reader: drawn as it reads
                            response.rest = chunks
                            response.result = result
                            return
                response.finish()
        finally:
            if response.rest is None and response.file is None:
                _close(result)


def _sends_file(response: Response, conn: Connection, wrapper: FileWrapper) -> bool:
    """Send a wrapped regular file with sendfile(2) (False for another file-like: the caller
    iterates it). What the client does not take now is left in `response.file` for the
    event loop in an HTTP worker; threaded mode waits for the client."""
    body = file_body(wrapper)
    if body is None:
        return False
    response.write(b"", known_total=body.left)  # the headers
    if not response.no_body:
        if response.length is not None:
            body.left = min(body.left, response.length)
        if conn.budget is None:
            _send_file_waiting(response, conn, body)
        elif not _send_file_part(response, conn, body):
            response.file = body
            response.result = wrapper
            return True
    response.finish()
    return True


def _send_file_part(response: Response, conn: Connection, body: FileBody) -> bool:
    """Send what the socket takes of the file now, at most `conn.ahead` bytes (other clients
    get their turn between two parts); True once it is all sent."""
    if conn.unsent:
        conn.flush()
        if conn.unsent:
            return False
    share = conn.ahead
    while body.left and share > 0:
        sent = conn.send_file(body.fd, body.offset, min(body.left, share))
        if sent is None:
            return False
        if not sent:
            body.left = 0  # the file is shorter than it was: finish() logs it, and closes
            break
        body.sent(sent)
        response.bytes_sent += sent
        share -= sent
    return not body.left


def _send_file_waiting(response: Response, conn: Connection, body: FileBody) -> None:
    """Send the file, waiting for the client; one that takes nothing for the response's
    send timeout is dropped (ClientGone)."""
    deadline = 0.0
    before = response.bytes_sent
    while not _send_file_part(response, conn, body):
        if response.bytes_sent != before:
            before = response.bytes_sent
            deadline = 0.0
        deadline = deadline or time.monotonic() + response.timeout
        conn.wait_writable(deadline)


def _status_code(status: str) -> int:
    """The code of a status line such as '200 OK'; raises ResponseError for anything else."""
    if not (status[:3].isdigit() and status[3:4] in ("", " ")):
        raise ResponseError(f"invalid status {status!r}")
    code = int(status[:3])
    if len(_status_codes) < _MAX_CACHED:
        _status_codes[status] = code
    return code


_KINDS = {"content-length": _LENGTH, "connection": _CONNECTION, "date": _DATE}


def _header_kind(name: str) -> int:
    """_LENGTH, _CONNECTION, _DATE or 0 (any other header) for a response header's name."""
    kind = _KINDS.get(name.lower(), 0)
    if len(_header_kinds) < _MAX_CACHED:
        _header_kinds[name] = kind
    return kind


def _close(result: Iterable[bytes]) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        close()


class _Rest:
    """The end of a response the event loop sends while the client reads: kept bytes, and
    the body's iterator when the application streams it (drawn as the client reads, never
    more than the connection's share of the send budget ahead of it)."""

    def __init__(
        self,
        handler: WSGIHandler,
        conn: Connection,
        request: Request,
        response: Response,
        started: float,
    ) -> None:
        self.handler = handler
        self.conn = conn
        self.request = request
        self.response = response
        self.started = started

    def resume(self) -> bool | None:
        conn, response = self.conn, self.response
        try:
            if conn.unsent:
                conn.flush()
            if response.file is not None:
                if not _send_file_part(response, conn, response.file):
                    return None
                self._close_body()
                response.finish()
            chunks = response.rest
            if chunks is not None and conn.unsent <= conn.ahead // 2:
                for chunk in chunks:
                    if chunk:
                        response.write(chunk)
                        if conn.unsent > conn.ahead:
                            return None
                self._close_body()
                response.finish()
            if conn.unsent:
                return None
        except ClientGone:
            response.keep_alive = False
        except Exception:
            log.exception("error streaming %s %s", self.request.method, self.request.target)
            response.keep_alive = False
        self._end()
        return response.keep_alive

    def abandon(self) -> None:
        self.response.keep_alive = False
        self._end()

    def _end(self) -> None:
        self._close_body()
        self.handler.answered(self.conn, self.request, self.response, self.started)

    def _close_body(self) -> None:
        result, self.response.result = self.response.result, None
        self.response.rest = None
        self.response.file = None
        if result is not None:
            try:
                _close(result)
            except Exception:
                log.exception(
                    "error closing the response of %s %s", self.request.method, self.request.target
                )


def _try_send(conn: Connection, data: bytes) -> None:
    with contextlib.suppress(ClientGone):
        conn.send_all(data, 1.0)
