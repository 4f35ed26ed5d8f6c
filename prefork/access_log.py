"""The access log: one line per request, in the log's own format, written in batches.

Through `logging`, a line costs a LogRecord, the formatter (a strftime per line) and a write
and flush of its own: on a hello-world worker, more than the request itself. Here a line is
one string format (the timestamp's second is formatted once a second) and an append to a
buffer, which leaves in one `os.write` when it holds BUFFER_SIZE, once no request has ended
for IDLE_WAIT (the server is idle), at least every FLUSH_INTERVAL while it stays busy, and
when the process ends (`shutdown`, called before `logging.shutdown` on every way out of a
worker, before a re-exec and at the interpreter's exit). The server's loop sees to it after
each turn (`after_turn`) and waits at most IDLE_WAIT while lines wait (`timeout`): no thread
of its own. Only a process killed outright (SIGKILL, RLIMIT_CPU) loses what it buffered; an
HTTP worker writes its buffer as soon as a request runs long, before a limit can kill it.

The lines are the ones `logging` wrote (`prefork.logs.FORMAT`, the same timestamp with its
milliseconds), to the same open file (a duplicate of the root handler's descriptor: standard
error or `logfile`). That holds only while nobody configured logging otherwise:
`open_access_log` decides once, when a server process starts (after the application's
import, which may configure logging), between this writer, `logging` itself (any other
configuration of `prefork.access` or of the root handler, honoured as before, at its cost)
and nothing (the logger is not enabled for INFO: `log_level = warning`, a disabled logger).

Writes are whole lines: to a regular file, one write per flush (Linux does not interleave
one write with another process's); to a pipe or a terminal, pieces of at most PIPE_BUF bytes
cut at line ends, the most the kernel keeps in one piece.

Thread-safe for threaded mode: a deque's append and popleft are atomic, and a flush holds a
lock. Only the byte count that triggers a flush by size may miss a concurrent line.

Compiled by mypyc (setup.py): a line costs the request path about 0.2 us less than run by
the interpreter.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import select
import stat
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO

from prefork import logs

NAME = "prefork.access"
MESSAGE = '%s - "%s %s %s" %d %d %.3f'  # remote address, request line, status, bytes, seconds
BUFFER_SIZE = 64 * 1024  # bytes buffered before a write
FLUSH_INTERVAL = 1.0  # seconds a line may wait while the worker stays busy
IDLE_WAIT = 0.05  # seconds without a request after which a worker loop is idle
WRITE_WAIT = 1.0  # seconds a flush waits for a descriptor that would block, per piece
PIPE_BUF = select.PIPE_BUF

log = logging.getLogger("prefork")
# Made at import, as handler.py always did: a logging configuration that disables the
# loggers existing at that time (dictConfig's disable_existing_loggers) disables it.
_logger = logging.getLogger(NAME)

# This process's buffered logs, for shutdown(); one leaves it when closed. (Not a WeakSet:
# mypyc compiles this module, and its classes take no weak references.)
_open: set[BufferedAccessLog] = set()


class AccessLog:
    """What a server needs of its access log; the logging-backed one, and the interface."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def write(
        self,
        peer: str,
        method: str,
        target: str,
        version: str,
        status: int,
        sent: int,
        elapsed: float,
    ) -> None:
        self._logger.info(MESSAGE, peer, method, target, version, status, sent, elapsed)

    def timeout(self, longest: float) -> float:
        """How long the server's loop may wait for work before its next turn."""
        return longest

    def after_turn(self) -> None:
        """Called by the server's loop after each turn."""

    def flush(self) -> None:
        """Write what is buffered."""


class BufferedAccessLog(AccessLog):
    """Lines in the log's format, buffered and written straight to a file descriptor, which
    this object owns (give it a duplicate)."""

    def __init__(
        self,
        fd: int,
        *,
        pid: int = 0,
        level: str = "INFO",
        name: str = NAME,
        encoding: str = "utf-8",
        clock: Callable[[], float] = time.time,
        converter: Callable[[float], time.struct_time] = time.localtime,
        time_format: str = "%Y-%m-%d %H:%M:%S",
        buffer_size: int = BUFFER_SIZE,
        interval: float = FLUSH_INTERVAL,
    ) -> None:
        super().__init__(logging.getLogger(name))
        self._fd = fd
        self._whole = stat.S_ISREG(os.fstat(fd).st_mode)  # else: pieces of PIPE_BUF
        self._encoding = encoding
        self._clock = clock
        self._converter = converter
        self._time_format = time_format
        self._buffer_size = buffer_size
        self._interval = interval
        tail = f" {pid or os.getpid()} {level} {name}: ".replace("%", "%%")
        self._format = "%s,%03d" + tail + MESSAGE + "\n"
        self._lines: collections.deque[str] = collections.deque()
        self._size = 0
        self._second = (0.0, "")  # the current second and its formatted time, one object
        self._due = 0.0  # write the buffer at the first turn after this (clock's time)
        self._last = 0.0  # when the last line came
        self._lock = threading.Lock()
        self._lost = 0
        self._closed = False
        _open.add(self)

    def write(
        self,
        peer: str,
        method: str,
        target: str,
        version: str,
        status: int,
        sent: int,
        elapsed: float,
    ) -> None:
        now = self._clock()
        second, stamp = self._second
        offset = now - second
        if not 0.0 <= offset < 1.0:  # the next second (or the clock went back)
            second, stamp = self._next_second(now)
            offset = now - second
        line = self._format % (
            stamp,
            int(offset * 1000),
            peer,
            method,
            target,
            version,
            status,
            sent,
            elapsed,
        )
        self._lines.append(line)
        self._last = now
        self._size += len(line)
        if self._size >= self._buffer_size:
            self.flush()

    def _next_second(self, now: float) -> tuple[float, str]:
        second = float(int(now))
        current = self._second = (second, time.strftime(self._time_format, self._converter(second)))
        return current

    @property
    def pending(self) -> int:
        """Lines buffered."""
        return len(self._lines)

    def timeout(self, longest: float) -> float:
        """While lines wait, the loop turns at least every IDLE_WAIT to see to them."""
        return min(longest, IDLE_WAIT) if self._lines else longest

    def after_turn(self) -> None:
        """Write the buffer once no line came for IDLE_WAIT (the server is idle), or
        FLUSH_INTERVAL after the last write (it stays busy)."""
        if self._lines:
            now = self._clock()
            if now >= self._due or now - self._last >= IDLE_WAIT:
                self.flush()

    def flush(self) -> None:
        with self._lock:
            lines = self._lines
            count = len(lines)
            if not count:
                return
            if self._closed:  # a line logged after close(): dropped
                lines.clear()
                return
            self._size = 0
            self._due = self._clock() + self._interval
            pop = lines.popleft
            text = "".join([pop() for _ in range(count)])
            self._write(text.encode(self._encoding, "backslashreplace"), count)

    def close(self) -> None:
        """Write what is buffered and close the descriptor; later lines are dropped."""
        self.flush()
        with self._lock:
            if not self._closed:
                self._closed = True
                os.close(self._fd)
        _open.discard(self)

    def _write(self, data: bytes, count: int) -> None:
        pieces = (data,) if self._whole else _pieces(data, PIPE_BUF)
        for piece in pieces:
            done, size = 0, len(piece)
            while done < size:  # more than one write only when one is cut short
                try:
                    done += os.write(self._fd, piece[done:] if done else piece)
                except BlockingIOError:  # a non-blocking descriptor (shared with others)
                    if not _writable(self._fd, WRITE_WAIT):
                        self._failed(count, "it stays full")
                        return
                except OSError as exc:
                    self._failed(count, exc.strerror or str(exc))
                    return

    def _failed(self, count: int, reason: str) -> None:
        """Lines that cannot be written are dropped: a worker must not stop for its log.
        Said once per process (through logging, which may fail the same way)."""
        if not self._lost:
            log.warning(
                "access log: cannot write (%s): %d line(s) lost, later failures not reported",
                reason,
                count,
            )
        self._lost += count


def _writable(fd: int, timeout: float) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return bool(poller.poll(timeout * 1000))


def _pieces(data: bytes, most: int) -> Iterator[bytes]:
    """`data` cut at line ends into pieces of at most `most` bytes (a longer line alone)."""
    start, end = 0, len(data)
    while end - start > most:
        cut = data.rfind(b"\n", start, start + most) + 1
        if cut <= start:  # one line longer than `most`: it goes alone
            cut = data.find(b"\n", start + most) + 1 or end
        yield data[start:cut]
        start = cut
    if start < end:
        yield data[start:]


def open_access_log(enabled: bool = True) -> AccessLog | None:
    """The access log of this process, decided once when its server starts: None when no
    line would be emitted, the buffered writer when `prefork.access` goes where prefork's
    logging setup sends it, in its format, else `logging` (the configuration the user
    made applies, at its cost)."""
    if not enabled:
        return None
    logger = _logger
    if not logger.isEnabledFor(logging.INFO):  # log_level above info, a disabled logger
        return None
    destination = _default_destination(logger)
    if destination is None:
        return AccessLog(logger)
    stream, formatter = destination
    return BufferedAccessLog(
        os.dup(stream.fileno()),
        level=logging.getLevelName(logging.INFO),
        name=logger.name,
        encoding=getattr(stream, "encoding", None) or "utf-8",
        converter=formatter.converter,
        time_format=formatter.default_time_format,
    )


def _default_destination(logger: logging.Logger) -> tuple[IO[str], logging.Formatter] | None:
    """The stream and formatter of the handler prefork's setup_logging installed, when the
    logger's records reach that handler alone, unfiltered and formatted as installed."""
    installed = logs.installed()
    if installed is None:
        return None
    handler, formatter = installed
    if (
        logging.getLogger().handlers != [handler]
        or handler.filters
        or handler.level > logging.INFO
        or handler.formatter is not formatter
        or type(formatter) is not logging.Formatter
        or formatter.datefmt is not None
        or formatter.default_msec_format != "%s,%03d"
        or logging.getLogRecordFactory() is not logging.LogRecord
    ):
        return None
    if type(logger) is not logging.Logger or logger.filters:  # only its own filters apply
        return None
    node: logging.Logger | None = logger
    while node is not None and node.parent is not None:  # on the way to the root: handlers
        if node.handlers or not node.propagate:
            return None
        node = node.parent
    stream: IO[str] | None = getattr(handler, "stream", None)
    if stream is None:
        return None
    try:
        stream.fileno()
    except (AttributeError, ValueError, OSError):  # a stream without a descriptor
        return None
    return stream, formatter


def shutdown() -> None:
    """Write what every access log of this process holds; before logging.shutdown() and
    before the process exits or re-executes."""
    for access_log in list(_open):
        access_log.flush()


atexit.register(shutdown)
