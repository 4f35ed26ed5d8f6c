"""Files through wsgi.file_wrapper, as a plain WSGI application
(tests/integration/test_file_wrapper.py).

/file?path=P[&seek=N][&length=L]  P from position N, with Content-Length L when given
/bytes?size=N                     N bytes of a BytesIO in the wrapper (no descriptor)
/pid                              the serving process's pid
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    query = {key: values[0] for key, values in parse_qs(environ["QUERY_STRING"]).items()}
    path = environ["PATH_INFO"]
    wrapper = environ["wsgi.file_wrapper"]
    headers = [("Content-Type", "application/octet-stream")]
    if path == "/file":
        file = open(query["path"], "rb")  # noqa: SIM115 - the server closes it
        file.seek(int(query.get("seek", "0")))
        if "length" in query:
            headers.append(("Content-Length", query["length"]))
        start_response("200 OK", headers)
        return wrapper(file, 65536)  # type: ignore[no-any-return]
    if path == "/bytes":
        start_response("200 OK", headers)
        return wrapper(io.BytesIO(pattern(int(query["size"]))), 8192)  # type: ignore[no-any-return]
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def pattern(size: int) -> bytes:
    """`size` bytes that differ from one offset to the next (a misplaced byte shows)."""
    block = bytes(range(251))  # a prime length: no alignment repeats it
    return (block * (size // len(block) + 1))[:size]
