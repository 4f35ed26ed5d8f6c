"""`environ["wsgi.file_wrapper"]` (PEP 3333's optional extension): the object an application
returns a file in, and what of a wrapped regular file the handler sends with sendfile(2).

    return environ["wsgi.file_wrapper"](open(path, "rb"), 65536)

Django's FileResponse and Flask's send_file return one when the server offers it. A file
with a descriptor on a regular file goes from the page cache to the socket, never through
Python; anything else (a BytesIO, a pipe, a socket) is read in blocks of `block_size`.
"""

from __future__ import annotations

import os
import stat
from typing import Any


class FileWrapper:
    """An iterator over a file-like object's blocks; `close()` closes the file-like."""

    def __init__(self, filelike: Any, block_size: int = 8192) -> None:
        self.filelike = filelike
        self.block_size = block_size

    def __iter__(self) -> FileWrapper:
        return self

    def __next__(self) -> bytes:
        data: bytes = self.filelike.read(self.block_size)
        if not data:
            raise StopIteration
        return data

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()

    # werkzeug's Range support seeks a seekable body instead of reading up to the range.
    def seekable(self) -> bool:
        seekable = getattr(self.filelike, "seekable", None)
        return bool(seekable()) if seekable is not None else False

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        position: int = self.filelike.seek(offset, whence)
        return position

    def tell(self) -> int:
        position: int = self.filelike.tell()
        return position


class FileBody:
    """The rest of a regular file to send: `left` bytes of descriptor `fd` from `offset`."""

    __slots__ = ("fd", "left", "offset")

    def __init__(self, fd: int, offset: int, left: int) -> None:
        self.fd = fd
        self.offset = offset
        self.left = left

    def sent(self, count: int) -> None:
        self.offset += count
        self.left -= count


def file_body(wrapper: FileWrapper) -> FileBody | None:
    """The wrapped file from its current position (an application may have seeked) to its
    end, when it is a regular file with a descriptor; None: read it through Python."""
    filelike = wrapper.filelike
    try:
        fd = filelike.fileno()
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or not info.st_size:
            return None  # /proc and sysfs files say 0 bytes and have more to read
        flush = getattr(filelike, "flush", None)
        if flush is not None:
            flush()  # bytes written but still in Python's buffer are not in the file yet
        offset = int(filelike.tell())
    except (AttributeError, OSError, ValueError, TypeError):  # io.UnsupportedOperation too
        return None
    return FileBody(fd, offset, max(info.st_size - offset, 0))
