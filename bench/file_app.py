"""The application of bench/file_download.py: one file (FILE_DOWNLOAD_PATH) downloaded.

- `/` returns it in `environ["wsgi.file_wrapper"]` when the server offers one, else reads
  it in blocks itself, as Django's FileResponse and werkzeug's send_file do;
- `/iterate` always reads it in blocks (prefork's behaviour before wsgi.file_wrapper).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO

PATH = os.environ.get("FILE_DOWNLOAD_PATH", "")
BLOCK = 65536


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    file = open(PATH, "rb")  # noqa: SIM115 - closed by the server, or by blocks()
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(os.fstat(file.fileno()).st_size)),
        ],
    )
    wrapper = environ.get("wsgi.file_wrapper")
    if wrapper is None or environ["PATH_INFO"] == "/iterate":
        return blocks(file)
    return wrapper(file, BLOCK)  # type: ignore[no-any-return]


def blocks(file: BinaryIO) -> Iterator[bytes]:
    with file:
        while data := file.read(BLOCK):
            yield data
