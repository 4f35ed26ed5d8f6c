"""The body readers on their own: each framing fed in pieces, what it leaves in the
buffer, and the errors that end a body."""

from __future__ import annotations

import pytest

from prefork.http.body import SPOOL_SIZE, ChunkedReader, ContentLengthReader
from prefork.http.errors import HTTPError

CHUNKED = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 11\r\n\r\n"


def chunked() -> ChunkedReader:
    return ChunkedReader(body_limit=1 << 20, field_size=100, max_fields=3)


def test_a_content_length_body_ends_at_its_length_and_leaves_the_next_request() -> None:
    reader, buf = ContentLengthReader(5), bytearray(b"hel")
    assert not reader.read(buf)
    buf += b"loGET / HTTP/1.1\r\n"
    assert reader.read(buf)
    assert reader.spool.stream().read() == b"hello"
    assert buf == b"GET / HTTP/1.1\r\n"


def test_a_large_body_moves_to_a_file_and_reads_back_whole() -> None:
    size = SPOOL_SIZE + 10
    reader, buf = ContentLengthReader(size), bytearray(b"a" * size)
    assert reader.read(buf)
    with reader.spool.stream() as stream:
        assert not hasattr(stream, "getvalue")  # a temporary file, not memory
        assert stream.read() == b"a" * size


@pytest.mark.parametrize("piece", [1, 2, 7, len(CHUNKED)])
def test_a_chunked_body_fed_in_pieces_is_the_same_body(piece: int) -> None:
    reader, buf = chunked(), bytearray()
    done = []
    for start in range(0, len(CHUNKED), piece):
        buf += CHUNKED[start : start + piece]
        done.append(reader.read(buf))
    assert done[-1] and not any(done[:-1])
    assert reader.spool.stream().read() == b"hello world"
    assert buf == b""


def test_a_chunked_body_leaves_the_pipelined_bytes() -> None:
    reader, buf = chunked(), bytearray(CHUNKED + b"GET /")
    assert reader.read(buf)
    assert buf == b"GET /"


@pytest.mark.parametrize(
    ("data", "status", "reason"),
    [
        (b"zz\r\n", 400, "invalid chunk size"),
        (b"5\r\nhello!!\r\n", 400, "chunk data longer than its size"),
        (b"0\r\nHost: x\r\n\r\n", 400, "Host is not allowed in a trailer"),
        (b"0\r\nbad line\r\n", 400, "invalid trailer field"),
        (b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n", 431, "too many trailer fields"),
        (b"0\r\nX: " + b"y" * 200, 431, "trailer field too large"),
        (b"1" * 4096, 400, "invalid chunk size line"),
    ],
)
def test_a_chunked_body_that_breaks_its_framing_is_refused(
    data: bytes, status: int, reason: str
) -> None:
    with pytest.raises(HTTPError) as refused:
        chunked().read(bytearray(data))
    assert refused.value.status == status
    assert reason in str(refused.value)


def test_chunks_past_the_body_limit_are_refused_before_their_data() -> None:
    reader = ChunkedReader(body_limit=8, field_size=100, max_fields=3)
    buf = bytearray(b"5\r\nhello\r\n")
    assert not reader.read(buf)
    with pytest.raises(HTTPError) as refused:
        reader.read(bytearray(b"4\r\n"))
    assert refused.value.status == 413
