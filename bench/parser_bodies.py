"""The parser's body readers, without the network: requests with a Content-Length body and
with a chunked one (four chunks and a trailer) fed whole, then split in 1,400-byte pieces
(a TCP segment's payload), through one RequestParser.

Each figure is the best of --rounds rounds of --count requests, in microseconds per request.
The same numbers before and after a change to prefork/http/ tell whether it costs anything.

Run: python bench/parser_bodies.py [--count 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prefork import compiled
from prefork.http.parser import Limits, RequestParser

BODY = b"x" * 2000
HEAD = b"POST /form HTTP/1.1\r\nHost: bench\r\nContent-Type: application/octet-stream\r\n"
LENGTH = HEAD + b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY
CHUNKS = b"".join(b"%x\r\n%s\r\n" % (500, BODY[i : i + 500]) for i in range(0, 2000, 500))
CHUNKED = HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + CHUNKS + b"0\r\nX-Sum: 1\r\n\r\n"
CASES = {"content-length": LENGTH, "chunked": CHUNKED}


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def one_round(parts: list[bytes], count: int) -> float:
    parser = RequestParser(Limits())
    start = time.perf_counter()
    for _ in range(count):
        for part in parts:
            parser.feed(part)
            request = parser.next_request()
        assert request is not None and request.content_length == len(BODY)
    return (time.perf_counter() - start) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"request path: {compiled.build()}")
    for name, data in CASES.items():
        for label, parts in (("whole", [data]), ("1400-byte pieces", pieces(data, 1400))):
            best = min(one_round(parts, args.count) for _ in range(args.rounds))
            print(f"{name:15} {label:17} {best:6.2f} us/request")


if __name__ == "__main__":
    main()
