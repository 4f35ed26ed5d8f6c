"""The I/O-free parser, fed bytes directly."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from prefork.http.body import SPOOL_SIZE
from prefork.http.errors import HTTPError
from prefork.http.parser import _COMMON_HEAD_RE, Limits, RequestParser
from prefork.http.request import Request


def parse_all(data: bytes, limits: Limits | None = None, step: int = 0) -> list[Request]:
    parser = RequestParser(limits or Limits())
    out = []
    pieces = [data[i : i + step] for i in range(0, len(data), step)] if step else [data]
    for piece in pieces:
        parser.feed(piece)
        while (request := parser.next_request()) is not None:
            out.append(request)
    return out


def test_byte_by_byte_equals_all_at_once() -> None:
    raw = (
        b"POST /a?b=c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: y\r\n\r\n"
        b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    whole = parse_all(raw)
    single = parse_all(raw, step=1)
    assert [(r.method, r.path, r.query, r.body.read()) for r in whole] == [
        ("POST", "/a", "b=c", b"hello world"),
        ("GET", "/next", "", b""),
    ]
    assert [(r.method, r.target) for r in single] == [(r.method, r.target) for r in whole]


def test_pipelined_bytes_stay_unparsed_until_asked() -> None:
    parser = RequestParser(Limits())
    parser.feed(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE")
    first = parser.next_request()
    assert first is not None and first.path == "/1"
    assert not parser.idle  # the second request waits in the buffer
    second = parser.next_request()
    assert second is not None and second.path == "/2"
    with pytest.raises(HTTPError):
        parser.feed(b" \r\n")
        parser.next_request()


def test_body_never_includes_the_next_request() -> None:
    (first, second) = parse_all(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert first.body.read() == b"abc"
    assert first.body.read() == b""
    assert second.method == "GET"


def test_expect_continue_is_reported_once_before_the_body() -> None:
    parser = RequestParser(Limits())
    parser.feed(b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
    assert parser.next_request() is None
    assert parser.take_continue() is True
    assert parser.take_continue() is False
    parser.feed(b"ok")
    request = parser.next_request()
    assert request is not None and request.body.read() == b"ok"


def test_large_body_spools_to_a_file() -> None:
    size = SPOOL_SIZE * 3
    head = b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size
    (request,) = parse_all(head + b"z" * size, step=65536)
    assert request.content_length == size
    assert hasattr(request.body, "fileno")
    assert request.body.read() == b"z" * size
    request.body.close()


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /" + b"a" * 100 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 100 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + b"X: a\r\n" * 11 + b"\r\n", 431),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n", 413),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n", 413),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: br, chunked\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 400),
    ],
)
def test_limits_and_refusals(raw: bytes, status: int) -> None:
    limits = Limits(request_line=64, fields=10, field_size=64, body=1000)
    with pytest.raises(HTTPError) as caught:
        parse_all(raw, limits)
    assert caught.value.status == status


def test_oversized_line_is_refused_before_it_completes() -> None:
    parser = RequestParser(Limits(request_line=64))
    parser.feed(b"GET /" + b"a" * 100)
    with pytest.raises(HTTPError) as caught:
        parser.next_request()
    assert caught.value.status == 414


def test_keep_alive_rules() -> None:
    requests = parse_all(
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert [r.keep_alive for r in requests] == [True, False]
    (old,) = parse_all(b"GET / HTTP/1.0\r\n\r\n")
    (kept,) = parse_all(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
    assert (old.keep_alive, kept.keep_alive) == (False, True)


def test_leading_empty_lines_are_ignored() -> None:
    (request,) = parse_all(b"\r\n\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n")
    assert request.path == "/x"


def _head_outcome(parse: Callable[[], Request]) -> tuple[object, ...]:
    try:
        r = parse()
    except HTTPError as exc:
        return ("refused", exc.status)
    return (
        r.method,
        r.target,
        r.path,
        r.query,
        r.version,
        r.headers,
        r.keep_alive,
        r.expect_continue,
        r.line,
        r.authority,
    )


def test_common_head_path_parses_as_the_general_path() -> None:
    """The one-expression path for common heads is a shortcut, never a second opinion: on
    heads built from valid and invalid pieces alike it gives the general path's answer."""
    rng = random.Random(7)
    methods = ["GET", "POST", "OPTIONS", "M-SEARCH", "get", "G T", ""]
    targets = [
        "/",
        "/a?b=c&d",
        "/caf\xe9",
        "/?",
        "//double",
        "/x#frag",
        "*",
        "http://h/p?q",
        "/a b",
        "/\x7f",
    ]
    versions = ["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.2", "HTTP/1.1 ", "http/1.1"]
    fields = [
        "Host: example.com",
        "X-Empty:",
        "X-Tab: a\tb ",
        "X_Under: y",
        "Connection: close",
        "Connection: keep-alive",
        "Expect: 100-continue",
        "Content-Length: 0",
        "Transfer-Encoding: chunked",
        "X-Obs: \xe9\xff",
        "X-Colon: a:b:c",
        "Accept: */*",
        "host:x",
        "Content-Length: 5",
        "Bad Name: v",
        ": novalue",
        "NoColon",
        " folded",
        "X-Ctl: a\x01b",
        "X-Lf: a\nb",
        "X-Cr: a\rb",
        "Host: dup",
    ]
    common = 0
    for _ in range(3000):
        # Half the heads from the valid pieces only (the first of each list), half from all.
        valid = rng.random() < 0.5

        def pick(pieces: list[str], good: int, valid: bool = valid) -> str:
            return rng.choice(pieces[:good] if valid else pieces)

        line = (
            f"{pick(methods, 4)} {pick(targets, 5)} {pick(versions, 2)}"
            if rng.random() > 0.05
            else "GET / HTTP/1.1\rX"
        )
        count = rng.randint(0, 5)
        text = "\r\n".join([line, *rng.sample(fields[:12] if valid else fields, count)])
        raw = text.encode("latin-1") + b"\r\n\r\n"
        common += _COMMON_HEAD_RE.fullmatch(text) is not None

        def fast(raw: bytes = raw) -> Request:
            parser = RequestParser(Limits())
            parser.feed(raw)
            request = parser._parse_head()  # the head only: a body may be announced
            assert request is not None
            return request

        def general(text: str = text) -> Request:
            return RequestParser(Limits())._parse_any_head(text)

        assert _head_outcome(fast) == _head_outcome(general), text
    assert common > 600  # the shortcut was taken often enough to be compared


def _refusal(raw: bytes) -> int | None:
    try:
        parse_all(raw)
    except HTTPError as exc:
        return exc.status
    return None


@pytest.mark.parametrize(
    "raw",
    [
        b"GET / HTTP/1.1\r\n\r\n",  # the common path, no field at all
        b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n",  # the common path, fields but no Host
        b"GET /caf\xe9 HTTP/1.1\r\nAccept: */*\r\n\r\n",  # the general path
        b"GET http://example.com/ HTTP/1.1\r\n\r\n",  # absolute-form still needs Host
        b"OPTIONS * HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",  # duplicated, even if equal
    ],
)
def test_http11_needs_exactly_one_host(raw: bytes) -> None:
    """RFC 9112 3.2: 400 for HTTP/1.1 without Host, or with more than one."""
    assert _refusal(raw) == 400


def test_http10_without_host_is_accepted() -> None:
    (request,) = parse_all(b"GET /x HTTP/1.0\r\n\r\n")
    assert request.path == "/x" and request.authority == ""


@pytest.mark.parametrize(
    ("host", "valid"),
    [
        ("example.com", True),
        ("EXAMPLE.com:8080", True),
        ("127.0.0.1:80", True),
        ("[::1]", True),
        ("[2001:db8::1]:443", True),
        ("localhost:", True),
        ("", True),
        ("0.0.0.0=5000", True),  # sub-delims are reg-name characters (a corpus case)
        ("xn--caf-dma.example", True),
        ("a_b.example%41", True),
        ("exa mple.com", False),
        ("user@evil.example", False),
        ("a@b:80", False),
        ("example.com/path", False),
        ("example.com?q", False),
        ("example.com#f", False),
        ("[::1", False),
        ("::1", False),
        ("example.com:80:80", False),
        ("example.com:123456", False),
        ("caf\xe9.example", False),
        ("a\\b", False),
        ('"quoted"', False),
        ("%zz", False),
        ("<script>", False),
        ("a b", False),
    ],
)
def test_host_value_must_be_an_authority(host: str, valid: bool) -> None:
    raw = b"GET / HTTP/1.1\r\nHost: " + host.encode("latin-1") + b"\r\n\r\n"
    assert _refusal(raw) == (None if valid else 400), host
    # The general path (a target the common expression leaves) judges the same way.
    raw = raw.replace(b"GET / ", b"GET /caf\xe9 ")
    assert _refusal(raw) == (None if valid else 400), host


@pytest.mark.parametrize(
    ("target", "authority", "path", "query"),
    [
        ("http://example.com/x?y=1", "example.com", "/x", "y=1"),
        ("https://Example.com:8443", "Example.com:8443", "/", ""),
        ("http://[::1]:8080/foo", "[::1]:8080", "/foo", ""),
        ("http://user:pass@example.com:8080/foo?q=1", "example.com:8080", "/foo", "q=1"),
    ],
)
def test_absolute_form_authority_wins_over_host(
    target: str, authority: str, path: str, query: str
) -> None:
    """RFC 9112 3.2.2: the target's authority is the host, whatever Host says (userinfo
    is never part of it)."""
    raw = f"GET {target} HTTP/1.1\r\nHost: other.example\r\n\r\n".encode()
    (request,) = parse_all(raw)
    assert (request.authority, request.path, request.query) == (authority, path, query)
    assert ("HOST", "other.example") in request.headers  # the fields stay as received


@pytest.mark.parametrize(
    "target", ["http:///x", "http://@/x", "http://:80/x", "http://a@b@/x", "http://exa%mple/"]
)
def test_absolute_form_without_a_valid_authority_is_refused(target: str) -> None:
    assert _refusal(f"GET {target} HTTP/1.1\r\nHost: h\r\n\r\n".encode()) == 400


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        # A wrong request line in a head over the size limit: the line's 400, not the 431.
        (b"G:ET / HTTP/1.1\r\nHost: h\r\n" + b"X: v\r\n" * 400 + b"\r\n", 400),
        # A request line over its limit in a head with a control character: the 414.
        (b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: h\r\nX: \x01\r\n\r\n", 414),
    ],
)
def test_a_head_is_refused_alike_whole_or_in_pieces(raw: bytes, status: int) -> None:
    """Fed in pieces, a head is refused for its request line as soon as that line is in;
    fed whole, it must get the same answer (found by tests/unit/test_fuzz.py)."""
    limits = Limits(request_line=120, fields=8, field_size=200)
    for step in (0, 1, 7, 64):
        with pytest.raises(HTTPError) as caught:
            parse_all(raw, limits, step)
        assert caught.value.status == status, step
