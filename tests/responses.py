"""Reading raw HTTP responses back: shared by unit tests (bytes a handler wrote) and
integration tests (bytes a server sent)."""

from __future__ import annotations

import http.client
import io


class _Stream(io.BytesIO):
    def close(self) -> None:
        """http.client closes the file after a close-delimited response; keep reading."""


class _Source:
    def __init__(self, stream: io.BytesIO) -> None:
        self._stream = stream

    def makefile(self, *args: object, **kwargs: object) -> io.BytesIO:
        return self._stream


def parse_responses(
    data: bytes, methods: list[str] | None = None
) -> list[tuple[int, dict[str, str], bytes]]:
    """Split a byte stream into (status, headers, body) responses."""
    stream = _Stream(data)
    out = []
    index = 0
    while stream.tell() < len(data):
        response = http.client.HTTPResponse(_Source(stream))  # type: ignore[arg-type]
        if methods and index < len(methods):
            response._method = methods[index]  # type: ignore[attr-defined]
        response.begin()
        out.append((response.status, dict(response.getheaders()), response.read()))
        index += 1
    return out
