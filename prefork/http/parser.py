"""An I/O-free, strict HTTP/1.1 request parser.

Bytes go in with `feed`; `next_request` returns a `Request` once its head and its whole body
have arrived, and leaves any pipelined bytes after it in the buffer, untouched, until the next
call. It never reads a socket, so tests feed it bytes, and a single-threaded worker can parse
one request while the next one waits unparsed.

Invariants:
- A request is returned only when complete; nothing reaches the application half-arrived.
- Anything ambiguous about where a message ends (CL+TE, duplicate Content-Length, a
  Transfer-Encoding whose last coding is not chunked, bad chunk sizes, obs-fold, bare CR or LF)
  raises HTTPError(400): the caller answers and closes, so no smuggled bytes are ever parsed.
- Size limits raise before the oversized part is buffered: 414 (line), 431 (head), 413 (body).
- An HTTP/1.1 request has exactly one valid Host (RFC 9112 3.2), else HTTPError(400); an
  absolute-form target's authority is the request's host (`Request.authority`, 3.2.2).

httptools/llhttp is not used for this: its fixed method table rejects valid token methods,
it refuses obs-text in targets and whitespace before ';' in chunk extensions (all valid in the
conformance corpus), and it reports no byte offset at message boundaries, which is what lets
pipelined bytes stay unparsed. httptools.parse_url still splits absolute-form targets.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

import httptools

from prefork.http.body import BodyReader, ChunkedReader, ContentLengthReader
from prefork.http.errors import HTTPError, bad_request
from prefork.http.grammar import CTL_RE, TCHAR, TOKEN_RE
from prefork.http.host import HOST_RE, target_authority
from prefork.http.request import Request

# Methods are tokens without lower-case letters (as gunicorn): lower-case ones are almost
# always a client bug or an attack probe.
_METHOD = f"[{TCHAR.replace('a-z', '')}]+"
_REQUEST_LINE_RE = re.compile(rf"({_METHOD}) ([^\x00-\x20\x7f]+) HTTP/(\d)\.(\d)")
# The common head, matched in one pass: an origin-form request line of HTTP/1.0 or 1.1 (no
# fragment), then fields whose names are tokens and whose values hold no control character
# but HTAB. Whatever matches is parsed exactly as the general path would; whatever does not
# takes that path, which accepts it or refuses it with the precise reason.
_COMMON_HEAD_RE = re.compile(
    rf"({_METHOD}) (/[^\x00-\x20\x7f#]*) HTTP/1\.([01])"
    rf"((?:\r\n[{TCHAR}]+:[^\x00-\x08\x0a-\x1f\x7f]*)*)"
)
_VERSIONS = {"0": "HTTP/1.0", "1": "HTTP/1.1"}
_AUTHORITY_RE = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+):\d{1,5}")
_ABSOLUTE_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_CL_RE = re.compile(r"\d{1,18}")
_KNOWN_CODINGS = frozenset({"chunked", "identity", "gzip", "x-gzip", "deflate", "compress"})
_SPECIAL_FIELDS = frozenset(
    {"HOST", "CONTENT-TYPE", "CONTENT-LENGTH", "TRANSFER-ENCODING", "CONNECTION", "EXPECT"}
)


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits; line limits count the line's CRLF, as gunicorn's do."""

    request_line: int = 8190
    fields: int = 100
    field_size: int = 8190
    body: int = 64 << 20

    @property
    def head(self) -> int:
        """Most bytes a complete head may take, terminator included."""
        return self.request_line + self.fields * self.field_size + 2


class _EmptyBody(io.RawIOBase):
    """wsgi.input of a request without a body: always at its end, shared, read-only."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return 0

    def readline(self, size: int | None = -1) -> bytes:
        return b""

    def close(self) -> None:
        """Shared by every request: never closed."""


EMPTY_BODY = cast(BinaryIO, _EmptyBody())


class RequestParser:
    """Parses the requests of one connection, one at a time."""

    __slots__ = (
        "_body",
        "_buf",
        "_chunked",
        "_common_size",
        "_continue_pending",
        "_head_limit",
        "_length",
        "_limits",
        "_line_checked",
        "_request",
    )

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._head_limit = limits.head
        self._common_size = min(limits.request_line, limits.field_size) - 2
        self._buf = bytearray()
        self._reset()

    def _reset(self) -> None:
        self._request: Request | None = None
        self._body: BodyReader | None = None
        self._length: int | None = None
        self._chunked = False
        self._continue_pending = False
        self._line_checked = False  # the request line of a partial head was already checked

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def idle(self) -> bool:
        """True when no byte of a next request has arrived."""
        return self._request is None and not self._buf

    def unparsed(self) -> bytes | None:
        """The bytes buffered towards the next request while none is half-parsed (another
        parser can take over from them); None once a head has been parsed."""
        return None if self._request is not None else bytes(self._buf)

    def take_continue(self) -> bool:
        """True once when the client waits for `100 Continue` before sending its body."""
        pending, self._continue_pending = self._continue_pending, False
        return pending

    def next_request(self) -> Request | None:
        """The next complete request, or None until more bytes arrive; raises HTTPError."""
        request, body = self._request, self._body
        if request is None or body is None:  # set together, once a head announced a body
            if not self._buf:
                return None
            request = self._parse_head()
            if request is None:
                return None
            if not self._chunked and not self._length:
                # The common case, no body at all: reset only what a head can have set.
                self._length = None
                self._line_checked = False
                return request
            self._request = request
            body = self._body = self._body_reader(request)
        if not body.read(self._buf):
            return None
        return self._finish(request, body)

    # -- head -----------------------------------------------------------------------------

    def _parse_head(self) -> Request | None:
        buf = self._buf
        while buf.startswith(b"\r\n"):  # RFC 9112 2.2: ignore empty lines before a request
            del buf[:2]
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            self._check_partial_head()
            return None
        if end + 4 > self._head_limit:
            self._check_request_line()  # its verdict comes first, as when the head trickles in
            raise HTTPError(431, "request header fields too large")
        text = buf[:end].decode("latin-1")
        del buf[: end + 4]
        # No line of a head this short can be over a size limit.
        match = _COMMON_HEAD_RE.fullmatch(text) if end < self._common_size else None
        if match is None:
            return self._parse_any_head(text)
        method, target, minor, fields = match.groups()
        path, _, query = target.partition("?")
        request = Request(
            method=method,
            target=target,
            path=path,
            query=query,
            version=_VERSIONS[minor],
            headers=[],
            keep_alive=minor == "1",
            body=EMPTY_BODY,
            content_length=0,
            line=text[: match.end(3)],
        )
        if fields:
            self._parse_fields(request, fields[2:].split("\r\n"), True)
        elif minor == "1":
            raise bad_request("missing Host header")
        return request

    def _parse_any_head(self, text: str) -> Request:
        """The general path: every head the common expression does not match, accepted or
        refused with the precise reason. The request line is judged first: a head that
        arrives in pieces is refused for its line before the rest has come."""
        line, _, fields = text.partition("\r\n")
        request = self._parse_request_line(line)
        if CTL_RE.search(text.replace("\r\n", "\t")):
            raise bad_request("control character or bare CR/LF in the request head")
        if fields:
            self._parse_fields(request, fields.split("\r\n"), False)
        elif request.version == "HTTP/1.1":
            raise bad_request("missing Host header")
        return request

    def _check_partial_head(self) -> None:
        """Refuse a head that is already wrong before it is complete."""
        self._check_request_line()
        if len(self._buf) > self._limits.head:
            raise HTTPError(431, "request header fields too large")

    def _check_request_line(self) -> None:
        """Refuse the buffered request line once it is too long, or complete and wrong."""
        buf, limit = self._buf, self._limits.request_line
        line_end = buf.find(b"\r\n", 0, limit)
        if line_end < 0:
            if len(buf) >= limit:
                raise HTTPError(414, "request line too long")
        elif not self._line_checked:
            self._parse_request_line(buf[:line_end].decode("latin-1"))
            self._line_checked = True

    def _parse_request_line(self, line: str) -> Request:
        if len(line) + 2 > self._limits.request_line:
            raise HTTPError(414, "request line too long")
        match = _REQUEST_LINE_RE.fullmatch(line)
        if match is None:
            raise bad_request("invalid request line")
        method, target, major, minor = match.groups()
        if major != "1" or minor not in "01":
            raise bad_request("unsupported HTTP version")
        path, query, authority = _split_target(method, target)
        return Request(
            method=method,
            target=target,
            path=path,
            query=query,
            version=_VERSIONS[minor],
            headers=[],
            keep_alive=minor == "1",
            body=EMPTY_BODY,
            content_length=0,
            line=line,
            authority=authority,
        )

    def _check_fields(self, lines: list[str]) -> None:
        """Each line a token, a colon and a value, within the size limit."""
        field_size = self._limits.field_size - 2  # the limit counts the line's CRLF
        for line in lines:
            if len(line) > field_size:
                raise HTTPError(431, "header field too large")
            name, colon, _ = line.partition(":")
            if not colon or not TOKEN_RE.fullmatch(name):
                raise bad_request("invalid header field")

    def _parse_fields(self, request: Request, lines: list[str], checked: bool) -> None:
        """Header fields of a head with no control character and no bare CR/LF; with
        `checked`, each line is known to be a token, a colon and a value within the size
        limit already (the common expression checked it)."""
        if len(lines) > self._limits.fields:
            raise HTTPError(431, "too many header fields")
        if not checked:
            self._check_fields(lines)
        codings: list[str] | None = None
        host = content_type = False  # the singletons: a second one is refused
        append = request.headers.append
        for line in lines:
            name, _, value = line.partition(":")
            name = name.upper()
            value = value.strip(" \t")
            if name in _SPECIAL_FIELDS:
                if name == "HOST":  # every request has one: no call for it
                    if host:
                        raise bad_request("duplicate Host header")
                    if HOST_RE.fullmatch(value) is None:
                        raise bad_request("invalid Host header")
                    host = True
                elif name == "CONTENT-TYPE":
                    if content_type:
                        raise bad_request("duplicate Content-Type header")
                    content_type = True
                else:
                    if codings is None:
                        codings = []
                    self._special_field(request, name, value, codings)
            elif "_" in name:
                continue
            append((name, value))
        if not host and request.version == "HTTP/1.1":
            raise bad_request("missing Host header")
        if codings:
            self._apply_transfer_coding(request, codings)

    def _special_field(self, request: Request, name: str, value: str, codings: list[str]) -> None:
        """The fields that frame the message or the connection (not the singletons)."""
        if name == "CONTENT-LENGTH":
            self._length = _content_length(value, self._length)
        elif name == "TRANSFER-ENCODING":
            codings.extend(c.strip(" \t").lower() for c in value.split(","))
        elif name == "CONNECTION":
            request.keep_alive = _keep_alive(value, request.keep_alive, request.version)
        elif name == "EXPECT":
            request.expect_continue = value.lower() == "100-continue"

    def _apply_transfer_coding(self, request: Request, codings: list[str]) -> None:
        """Accept only framings with one unambiguous end: chunked, once and last."""
        if all(c == "identity" for c in codings):
            return
        if request.version == "HTTP/1.0":
            raise bad_request("Transfer-Encoding is not allowed in HTTP/1.0")
        if self._length is not None:
            raise bad_request("both Content-Length and Transfer-Encoding")
        if codings[-1] != "chunked" or codings.count("chunked") != 1:
            raise bad_request("Transfer-Encoding must end with chunked, once")
        if not _KNOWN_CODINGS.issuperset(codings):
            raise HTTPError(501, "unsupported transfer coding")
        self._chunked = True

    # -- body -----------------------------------------------------------------------------

    def _body_reader(self, request: Request) -> BodyReader:
        """The reader of the body the head announced; a length over the limit is refused
        before any of the body is buffered."""
        limits = self._limits
        reader: BodyReader
        if self._chunked:
            reader = ChunkedReader(limits.body, limits.field_size, limits.fields)
        else:
            assert self._length is not None
            if self._length > limits.body:
                raise HTTPError(413, "request body too large")
            reader = ContentLengthReader(self._length)
        self._continue_pending = request.expect_continue and request.version == "HTTP/1.1"
        return reader

    def _finish(self, request: Request, body: BodyReader) -> Request:
        request.body = body.spool.stream()
        request.content_length = body.spool.size
        self._reset()
        return request


def _split_target(method: str, target: str) -> tuple[str, str, str]:
    """(path, query, authority) of a request target, refusing forms the method does not
    allow; the authority of an absolute-form target only, else empty."""
    if target[0] == "/":
        path = target.split("#", 1)[0]
        path, _, query = path.partition("?")
        return path, query, ""
    if target == "*":
        if method != "OPTIONS":
            raise bad_request("'*' target is only allowed with OPTIONS")
        return "*", "", ""
    if method == "CONNECT":
        if not _AUTHORITY_RE.fullmatch(target):
            raise bad_request("invalid CONNECT target")
        return target, "", ""
    scheme = _ABSOLUTE_RE.match(target)
    if scheme is not None:
        authority = target_authority(target, scheme.end())
        if authority is None:
            raise bad_request("invalid authority in the request target")
        path, query = _split_absolute(target)
        return path, query, authority
    raise bad_request("invalid request target")


def _split_absolute(target: str) -> tuple[str, str]:
    # Any: httptools annotates path and query as bytes, but leaves an absent part None
    # (and code compiled by mypyc would check the annotation).
    url: Any
    try:
        url = httptools.parse_url(target.encode("latin-1"))
    except httptools.HttpParserInvalidURLError:
        raise bad_request("invalid request target") from None
    if not url.host:
        raise bad_request("invalid request target")
    path = (url.path or b"/").decode("latin-1")
    return path, (url.query or b"").decode("latin-1")


def _content_length(value: str, previous: int | None) -> int:
    if previous is not None:
        raise bad_request("duplicate Content-Length header")
    if not _CL_RE.fullmatch(value):
        raise bad_request("invalid Content-Length")
    return int(value)


def _keep_alive(value: str, current: bool, version: str) -> bool:
    tokens = {t.strip().lower() for t in value.split(",")}
    if "close" in tokens:
        return False
    if "keep-alive" in tokens and version == "HTTP/1.0":
        return True
    return current
