"""Request bodies: one reader per framing, chosen once the head is parsed.

A reader takes bytes off the front of the connection's buffer and leaves anything after the
body (a pipelined request) where it is. `read` returns True once the body is complete; it
raises HTTPError for a body that breaks its framing or a limit, before buffering the excess.
"""

from __future__ import annotations

import io
import re
import tempfile
from typing import BinaryIO

from prefork.http.errors import HTTPError, bad_request
from prefork.http.grammar import CTL_RE, TCHAR, TOKEN_RE

_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_TOKEN_B = rf"[{TCHAR}]+".encode()
_CHUNK_SIZE_RE = re.compile(
    rb"([0-9A-Fa-f]{1,16})(?:[ \t]*;[ \t]*"
    + _TOKEN_B
    + rb"(?:[ \t]*=[ \t]*(?:"
    + _TOKEN_B
    + rb"|"
    + _QUOTED
    + rb"))?)*"
)
_FORBIDDEN_TRAILERS = frozenset(
    {
        "CONTENT-LENGTH",
        "TRANSFER-ENCODING",
        "HOST",
        "CONTENT-ENCODING",
        "CONNECTION",
        "EXPECT",
        "AUTHORIZATION",
        "COOKIE",
        "TE",
        "TRAILER",
    }
)
_MAX_CHUNK_LINE = 4096
SPOOL_SIZE = 1 << 20  # bodies larger than this are buffered in a temporary file


class Spool:
    """Collects a body in memory, moving to a temporary file past SPOOL_SIZE."""

    __slots__ = ("_file", "_memory", "size")

    def __init__(self) -> None:
        self._memory = bytearray()
        self._file: BinaryIO | None = None
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.size += len(data)
        if self._file is not None:
            self._file.write(data)
            return
        self._memory += data
        if len(self._memory) > SPOOL_SIZE:
            self._file = tempfile.TemporaryFile()  # noqa: SIM115 - owned by the Request
            self._file.write(self._memory)
            self._memory = bytearray()

    def stream(self) -> BinaryIO:
        if self._file is None:
            return io.BytesIO(self._memory)
        self._file.seek(0)
        return self._file


class BodyReader:
    """The framing of one body; `spool` holds what has arrived of it."""

    def __init__(self) -> None:
        self.spool = Spool()

    def read(self, buf: bytearray) -> bool:
        raise NotImplementedError


class ContentLengthReader(BodyReader):
    """A body of Content-Length bytes (checked against the body limit by the parser)."""

    def __init__(self, length: int) -> None:
        super().__init__()
        self._length = length

    def read(self, buf: bytearray) -> bool:
        wanted = self._length - self.spool.size
        taken = buf[:wanted]
        del buf[:wanted]
        self.spool.write(taken)
        return len(taken) == wanted


# The places a chunked body can be in, in the order they come.
_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


class ChunkedReader(BodyReader):
    """Transfer-Encoding: chunked (RFC 9112 7.1): size lines with their extensions, data
    and its CRLF, then the trailer fields, which are checked and dropped."""

    def __init__(self, body_limit: int, field_size: int, max_fields: int) -> None:
        super().__init__()
        self._body_limit = body_limit
        self._field_size = field_size
        self._max_fields = max_fields
        self._place = _SIZE
        self._chunk_left = 0
        self._trailers = 0

    def read(self, buf: bytearray) -> bool:
        while self._place != _DONE:
            before = len(buf)
            if not self._step(buf) and len(buf) == before:
                return False  # waits for more bytes
        return True

    def _step(self, buf: bytearray) -> bool:
        """One place's work; False when it needs more bytes than the buffer holds."""
        place = self._place
        if place == _DATA:
            return self._data(buf)
        if place == _SIZE:
            return self._size_line(buf)
        if place == _DATA_END:
            return self._data_end(buf)
        return self._trailer(buf)

    def _size_line(self, buf: bytearray) -> bool:
        end = buf.find(b"\r\n", 0, _MAX_CHUNK_LINE)
        if end < 0:
            if len(buf) >= _MAX_CHUNK_LINE:
                raise bad_request("invalid chunk size line")
            return False
        match = _CHUNK_SIZE_RE.fullmatch(buf, 0, end)
        if match is None:
            raise bad_request("invalid chunk size")
        size = int(match.group(1), 16)
        del buf[: end + 2]
        if self.spool.size + size > self._body_limit:
            raise HTTPError(413, "request body too large")
        self._chunk_left = size
        self._place = _DATA if size else _TRAILER
        return True

    def _data(self, buf: bytearray) -> bool:
        taken = buf[: self._chunk_left]
        del buf[: self._chunk_left]
        self.spool.write(taken)
        self._chunk_left -= len(taken)
        if self._chunk_left:
            return False
        self._place = _DATA_END
        return True

    def _data_end(self, buf: bytearray) -> bool:
        if len(buf) < 2:
            if bytes(buf) not in (b"", b"\r"):
                raise bad_request("chunk data longer than its size")
            return False
        if buf[:2] != b"\r\n":
            raise bad_request("chunk data longer than its size")
        del buf[:2]
        self._place = _SIZE
        return True

    def _trailer(self, buf: bytearray) -> bool:
        end = buf.find(b"\r\n", 0, self._field_size)
        if end < 0:
            if len(buf) >= self._field_size:
                raise HTTPError(431, "trailer field too large")
            return False
        line = buf[:end].decode("latin-1")
        del buf[: end + 2]
        if not line:
            self._place = _DONE
            return True
        name, colon, _ = line.partition(":")
        if not colon or not TOKEN_RE.fullmatch(name) or CTL_RE.search(line):
            raise bad_request("invalid trailer field")
        if name.upper() in _FORBIDDEN_TRAILERS:
            raise bad_request(f"{name} is not allowed in a trailer")
        self._trailers += 1
        if self._trailers > self._max_fields:
            raise HTTPError(431, "too many trailer fields")
        return True
