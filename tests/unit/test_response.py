"""The WSGI handler's side of the contract (PEP 3333): what an application's start_response
call and body become on the wire, over a real socket pair."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from prefork.http.connection import Connection
from prefork.http.parser import Limits, RequestParser
from prefork.http.responses import DateCache
from prefork.wsgi.environ import EnvironBuilder
from prefork.wsgi.handler import WSGIHandler, direct

App = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def serve(app: App, raw: bytes = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") -> tuple[bool, bytes]:
    """(keep-alive, bytes sent) for one request to `app`."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        parser = RequestParser(Limits())
        parser.feed(raw)
        request = parser.next_request()
        assert request is not None
        handler = WSGIHandler(
            app,
            EnvironBuilder("127.0.0.1", 80, False),
            DateCache(),
            send_timeout=1.0,
            access_log=None,
            draining=lambda: False,
        )
        keep_alive = handler.serve(Connection(ours, ("127.0.0.1", 1), Limits()), request)
        ours.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := theirs.recv(65536):
            data += chunk
    return keep_alive, data


def answering(status: str, headers: list[tuple[str, str]], body: bytes = b"hi") -> App:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response(status, headers)
        return [body]

    return app


def head_lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def test_headers_are_sent_as_given_with_the_length_computed() -> None:
    keep_alive, data = serve(answering("200 OK", [("X-A", "1"), ("Content-Type", "text/x")]))
    lines = head_lines(data)
    assert keep_alive and lines[0] == b"HTTP/1.1 200 OK"
    assert lines[1:3] == [b"X-A: 1", b"Content-Type: text/x"]
    assert b"Content-Length: 2" in lines and data.endswith(b"\r\n\r\nhi")


@pytest.mark.parametrize("name", ["Content-Length", "content-length", "CONTENT-LENGTH"])
def test_the_applications_length_is_used_in_any_case(name: str) -> None:
    keep_alive, data = serve(answering("200 OK", [(name, "2")]))
    assert keep_alive and head_lines(data).count(f"{name}: 2".encode()) == 1
    assert b"content-length" not in data.lower().replace(name.lower().encode(), b"", 1)


def test_a_longer_body_than_its_length_is_not_sent() -> None:
    keep_alive, data = serve(answering("200 OK", [("Content-Length", "1")], b"too long"))
    assert not keep_alive and b"too long" not in data


@pytest.mark.parametrize("value", ["close", "Close", "keep-alive, close"])
def test_connection_close_from_the_application_closes(value: str) -> None:
    keep_alive, data = serve(answering("200 OK", [("connection", value)]))
    assert not keep_alive
    assert [line for line in head_lines(data) if line.lower().startswith(b"connection")] == [
        b"Connection: close"
    ]


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
def test_bodiless_statuses_send_no_body_and_no_length(status: str) -> None:
    keep_alive, data = serve(answering(status, [], b""))
    assert keep_alive and data.endswith(b"\r\n\r\n") and b"Content-Length" not in data


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        ("200 OK\r\nX-Injected: 1", []),
        ("200 OK", [("X-A", "1\r\nX-Injected: 1")]),
        ("200 OK", [("X-A", "1\nX-Injected: 1")]),
        ("200 OK", [("X-A\r\nX-Injected", "1")]),
        ("OK", []),
        ("2000 OK", []),
        ("", []),
    ],
)
def test_a_broken_status_or_header_gets_500_and_nothing_of_it_is_sent(
    status: str, headers: list[tuple[str, str]]
) -> None:
    keep_alive, data = serve(answering(status, headers))
    assert not keep_alive and data.startswith(b"HTTP/1.1 500 ")
    assert b"Injected" not in data


def test_start_response_twice_without_exc_info_gets_500() -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [])
        start_response("404 Not Found", [])
        return [b""]

    keep_alive, data = serve(app)
    assert not keep_alive and data.startswith(b"HTTP/1.1 500 ")


def test_start_response_again_with_exc_info_replaces_the_status() -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("X-A", "1")])
        try:
            raise ValueError("late")
        except ValueError:
            import sys

            start_response("502 Bad Gateway", [("X-B", "2")], sys.exc_info())
        return [b"bad"]

    keep_alive, data = serve(app)
    assert keep_alive and head_lines(data)[:2] == [b"HTTP/1.1 502 Bad Gateway", b"X-B: 2"]
    assert b"X-A" not in data


def test_head_request_gets_the_length_but_no_body() -> None:
    keep_alive, data = serve(
        answering("200 OK", [("Content-Length", "2")]), b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert keep_alive and b"Content-Length: 2" in data and data.endswith(b"\r\n\r\n")


def test_middlewares_are_called_through_their_bound_call() -> None:
    class Middleware:
        def __call__(
            self,
            environ: dict[str, Any],
            start_response: Callable[..., Any],
        ) -> Iterable[bytes]:
            start_response("200 OK", [])
            return [b"mw"]

    class Inherited(Middleware):
        pass

    for app in (Middleware(), Inherited()):
        called = direct(app)
        assert called.__self__ is app  # type: ignore[attr-defined]
        assert serve(app)[1].endswith(b"\r\n\r\nmw")
    plain = answering("200 OK", [])
    assert direct(plain) is plain and direct(Middleware) is Middleware


@pytest.mark.parametrize("name", ["Date", "date"])
@pytest.mark.parametrize("framed", [True, False], ids=["length", "chunked"])
def test_the_applications_own_date_is_the_only_one(name: str, framed: bool) -> None:
    """Flask sets Date for ETag/304 and send_file; a second one would contradict it."""
    date = "Sun, 06 Nov 1994 08:49:37 GMT"

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [(name, date)])
        return [b"x"] if framed else iter([b"a", b"b"])

    lines = [line.lower() for line in head_lines(serve(app)[1])]
    dates = [line for line in lines if line.startswith(b"date:")]
    assert dates == [f"date: {date}".lower().encode()]


def test_a_date_is_added_when_the_application_sends_none() -> None:
    lines = head_lines(serve(answering("200 OK", []))[1])
    assert len([line for line in lines if line.startswith(b"Date: ")]) == 1
