"""The parser under mutated requests: in-process, a fixed seed, a bounded count.

Valid requests are mutated (bits flipped, bytes inserted, removed or repeated, truncations,
huge or many header fields, CR/LF variants, bad chunk sizes) and fed whole, then split at
random points across `feed` calls. Every input must end in requests or in the parser's own
HTTPError, never in another exception, and every way of splitting it must give the same
requests and the same status: a client cannot change the outcome by how it sends the bytes.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Callable

from prefork.http.errors import HTTPError
from prefork.http.parser import Limits, RequestParser
from prefork.http.request import Request

SEED = 20261202
CASES = 4000
SPLITS = 3  # random splittings of each case, besides whole and (short ones) byte by byte
BYTE_BY_BYTE_BELOW = 600  # feeding one byte at a time re-scans the buffer: short cases only

VALID = [
    b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"GET /a/b?c=d&e HTTP/1.1\r\nHost: h:8080\r\nAccept: */*\r\nUser-Agent: fuzz\r\n\r\n",
    b"POST /form HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\n"
    b"hello world",
    b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    b'5\r\nhello\r\n6;name="v a"\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n',
    b"PUT /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    b"GET http://example.com:81/p?q HTTP/1.1\r\nHost: other\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"\r\nGET /caf\xe9 HTTP/1.1\r\nHost: h\r\nX-Obs: \xe9\t\xff\r\nConnection: close\r\n\r\n",
    b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nPOST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nok",
]
LIMITS = [Limits(), Limits(request_line=120, fields=8, field_size=200, body=64)]
TOKENS = [
    b"\r",
    b"\n",
    b"\r\n",
    b"\r\n\r\n",
    b"\x00",
    b" ",
    b"\t",
    b":",
    b";",
    b"0",
    b"\xff",
    b"\x7f",
    b"@",
    b"_",
    b"Host: x\r\n",
    b"Content-Length: 5\r\n",
    b"Content-Length: -1\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip\r\n",
    b" HTTP/1.1",
]
LINE_ENDS = [b"\n", b"\r", b"\r\r\n", b"\n\r", b" \r\n", b"\r\n "]
BAD_SIZES = [
    b"-1",
    b"0x5",
    b"f" * 17,
    b" 5",
    b"5 ",
    b"",
    b"g",
    b"+5",
    b"5;",
    b'5;a="b',
    b"ffffffff",
    b"5\x00",
    b"05",
    b"5;a=b;c",
]
_CHUNK_SIZE = re.compile(rb"\r\n\r\n([0-9a-fA-F]+)|\r\n([0-9a-fA-F]+)(?=[;\r])")

Mutation = Callable[[random.Random, bytes, Limits], bytes]


def _flip(rng: random.Random, data: bytes, limits: Limits) -> bytes:
    at = rng.randrange(len(data))
    return data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1 :]


def _insert(rng: random.Random, data: bytes, limits: Limits) -> bytes:
    at = rng.randrange(len(data) + 1)
    return data[:at] + rng.choice(TOKENS) + data[at:]


def _delete(rng: random.Random, data: bytes, limits: Limits) -> bytes:
    at = rng.randrange(len(data))
    return data[:at] + data[at + rng.randint(1, 8) :]


def _truncate(rng: random.Random, data: bytes, limits: Limits) -> bytes:
    return data[: rng.randrange(len(data))]


def _repeat(rng: random.Random, data: bytes, limits: Limits) -> bytes:
    at = rng.randrange(len(data))
    piece = data[at : at + rng.randint(1, 40)]
    return data[:at] + piece * rng.randint(2, 4) + data[at:]


def _huge_field(rng: random.Random, data: bytes, limits: Limits) -> bytes:
    """A field around the size limit, many fields around the count limit, or a head
    around the whole head's limit."""
    kind = rng.randrange(3)
    if kind == 0:
        size = limits.field_size + rng.randint(-12, 4)
        field = b"X-Big: " + b"a" * max(0, size - 9) + b"\r\n"
    elif kind == 1:
        field = b"X-Many: v\r\n" * (limits.fields + rng.randint(-2, 1))
    else:
        field = b"X-Huge: v\r\n" * (limits.head // 11 + rng.randint(-2, 2))
    at = data.find(b"\r\n", 1) + 2
    return data[:at] + field + data[at:]


def _length(rng: random.Random, data: bytes, limits: Limits) -> bytes:
    """Another Content-Length: around the body limit, or wrong for the body sent."""
    match = re.search(rb"Content-Length: (\d+)", data)
    if match is None:
        return _insert(rng, data, limits)
    length = rng.choice([0, 1, limits.body, limits.body + 1, 10**6, 10**18])
    return data[: match.start(1)] + b"%d" % length + data[match.end(1) :]


def _long_target(rng: random.Random, data: bytes, limits: Limits) -> bytes:
    """A request target around the request line's limit."""
    at = data.find(b" /") + 2
    if at < 2:
        return _insert(rng, data, limits)
    return data[:at] + b"x" * (limits.request_line + rng.randint(-20, 4)) + data[at:]


def _line_end(rng: random.Random, data: bytes, limits: Limits) -> bytes:
    ends = [m.start() for m in re.finditer(rb"\r\n", data)]
    if not ends:
        return data
    at = rng.choice(ends)
    return data[:at] + rng.choice(LINE_ENDS) + data[at + 2 :]


def _chunk_size(rng: random.Random, data: bytes, limits: Limits) -> bytes:
    sizes = list(_CHUNK_SIZE.finditer(data))
    if b"chunked" not in data or not sizes:
        return _insert(rng, data, limits)
    match = rng.choice(sizes)
    group = 1 if match.group(1) is not None else 2
    return data[: match.start(group)] + rng.choice(BAD_SIZES) + data[match.end(group) :]


MUTATIONS: list[Mutation] = [
    _flip,
    _insert,
    _delete,
    _truncate,
    _repeat,
    _huge_field,
    _length,
    _long_target,
    _line_end,
    _chunk_size,
]


def _summary(request: Request, limits: Limits) -> tuple[object, ...]:
    body = request.body.read()
    request.body.close()
    assert len(body) == request.content_length <= limits.body
    return (
        request.method,
        request.target,
        request.path,
        request.query,
        request.version,
        tuple(request.headers),
        request.keep_alive,
        request.expect_continue,
        request.authority,
        request.line,
        body,
    )


def _outcome(data: bytes, limits: Limits, cuts: list[int]) -> tuple[object, ...]:
    """(requests, status of the refusal or None, whether bytes wait for more); anything
    but HTTPError propagates and fails the test."""
    parser = RequestParser(limits)
    requests = []
    bounds = [0, *cuts, len(data)]
    try:
        for start, end in itertools.pairwise(bounds):
            parser.feed(data[start:end])
            while (request := parser.next_request()) is not None:
                requests.append(_summary(request, limits))
    except HTTPError as exc:
        return tuple(requests), exc.status, None
    return tuple(requests), None, parser.idle


def _mutated(rng: random.Random, limits: Limits) -> bytes:
    data = rng.choice(VALID)
    for _ in range(rng.randint(1, 3)):
        if data:
            data = rng.choice(MUTATIONS)(rng, data, limits)
    return data


def test_mutated_requests_end_in_requests_or_http_errors_whatever_the_split() -> None:
    rng = random.Random(SEED)
    seen: dict[object, int] = {}
    for index in range(CASES):
        limits = rng.choice(LIMITS)
        data = _mutated(rng, limits)
        whole = _outcome(data, limits, [])
        splittings = [
            sorted(rng.sample(range(1, len(data)), max(0, min(len(data) - 1, k))))
            for k in (rng.randint(1, 6) for _ in range(SPLITS))
        ]
        if len(data) < BYTE_BY_BYTE_BELOW:
            splittings.append(list(range(1, len(data))))
        for cuts in splittings:
            assert _outcome(data, limits, cuts) == whole, (index, data[:300], cuts[:20])
        seen[whole[1]] = seen.get(whole[1], 0) + 1
    # The mutations reach the refusals, and leave some requests valid.
    assert {None, 400, 413, 414, 431}.issubset(seen), seen


def test_every_valid_seed_parses() -> None:
    for data in VALID:
        requests, status, idle = _outcome(data, Limits(), [])
        assert requests and status is None and idle, data
