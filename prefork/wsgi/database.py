"""Give each request its database transaction, end it before the response completes, and
answer 503 when the database is unavailable.

When the transaction ends:
- a list or tuple body (most frameworks' buffered responses), or a file in
  wsgi.file_wrapper: as soon as the application returns, before any byte is sent (a
  wrapped file is sent by the handler itself, with sendfile(2) when it can);
- any other iterable: when it is exhausted; while a transaction is open one chunk is held
  back, so the client cannot have the whole response before the commit is done (a body
  that never uses the database streams untouched);
- an exception, a 5xx status, or a client gone mid-body (close() before the end): rollback.
A request that never touches the database costs one small object and no connection.
A streamed body is always wrapped: a generator may first use the database while it runs.

The transaction is made by `bind`, a request hook of the WSGI handler, with the request's
response: its status decides commit or rollback, so start_response is not wrapped (that
cost every request a call, about 9% of a hello-world request's instructions).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prefork.db.errors import is_unavailable, one_line
from prefork.db.pool import Database
from prefork.db.transaction import RequestTransaction
from prefork.quiet_log import QuietLog
from prefork.wsgi.file_wrapper import FileWrapper
from prefork.wsgi.handler import Response, WSGIApp, direct
from prefork.wsgi.unavailable import RETRY_AFTER, UNAVAILABLE_LOG_EVERY

log = logging.getLogger("prefork.db")

UNAVAILABLE_BODY = b"503 Service Unavailable: the database is unavailable, try again shortly.\n"
UNAVAILABLE_HEADERS = [
    ("Content-Type", "text/plain; charset=utf-8"),
    ("Content-Length", str(len(UNAVAILABLE_BODY))),
    ("Retry-After", str(RETRY_AFTER)),
]


class DatabaseMiddleware:
    def __init__(self, app: WSGIApp, database: Database) -> None:
        self.app = direct(app)
        self.database = database
        self._quiet = QuietLog(log, UNAVAILABLE_LOG_EVERY)

    def bind(self, environ: dict[str, Any], response: Response) -> None:
        """The request hook: gives the request its transaction."""
        environ["prefork.db"] = RequestTransaction(self.database, response)

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        tx: RequestTransaction = environ["prefork.db"]
        try:
            result = self.app(environ, start_response)
        except Exception as exc:
            tx.end(commit=False)
            if not is_unavailable(exc):
                raise
            return self._unavailable(exc, start_response)
        if isinstance(result, (list, tuple, FileWrapper)):
            return self._end_buffered(tx, result, start_response) if tx.used else result
        return _CommitAtEnd(result, tx)  # a generator may use the database as it runs

    def _end_buffered(
        self, tx: RequestTransaction, result: Iterable[bytes], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        try:
            tx.end(commit=tx.status < 500)
        except Exception as exc:
            close = getattr(result, "close", None)
            if close is not None:
                close()
            if not is_unavailable(exc):
                raise
            return self._unavailable(exc, start_response)
        return result

    def _unavailable(self, exc: Exception, start_response: Callable[..., Any]) -> list[bytes]:
        self.database.discard_broken()
        self._quiet.warning("database unavailable, answering 503: %s", one_line(exc))
        start_response("503 Service Unavailable", UNAVAILABLE_HEADERS, sys.exc_info())
        return [UNAVAILABLE_BODY]


class _CommitAtEnd:
    """Passes a streamed body through, ending the transaction once it is exhausted; the
    last chunk is released only after that."""

    __slots__ = ("_done", "_result", "_tx")

    def __init__(self, result: Iterable[bytes], tx: RequestTransaction) -> None:
        self._result = result
        self._tx = tx
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        held: bytes | None = None
        try:
            for chunk in self._result:
                if held is not None:
                    yield held
                    held = None
                if self._tx.used:
                    held = chunk  # out only once we know whether it is the last one
                else:
                    yield chunk  # no transaction open: nothing to wait for
        except BaseException:
            self._finish(commit=False)
            raise
        self._finish(commit=self._tx.status < 500)
        if held is not None:
            yield held

    def _finish(self, commit: bool) -> None:
        if not self._done:
            self._done = True
            self._tx.end(commit)

    def close(self) -> None:
        try:
            self._finish(commit=False)  # closed before the end: the client is gone
        finally:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
