"""One log line per interval for what can repeat at request rate: a client sending garbage
in a loop, every request's 503 while Redis or the database is away, accept() failing on a
full file table. A flood must not fill the disk or bury the first line, which says what
went wrong; the next line logged says how many were left out.

Not locked: in threaded mode two threads may both log at the interval's edge or miscount
a skipped line, which costs one line, never one more per request.
"""

from __future__ import annotations

import logging
import time


class Interval:
    """The gate both share: admit() is None while the interval runs (the line is counted),
    else the number of lines skipped since the last one admitted."""

    __slots__ = ("_next", "_skipped", "every")

    def __init__(self, every: float) -> None:
        self.every = every
        self._next, self._skipped = 0.0, 0

    def admit(self) -> int | None:
        now = time.monotonic()
        if now < self._next:
            self._skipped += 1
            return None
        skipped, self._next, self._skipped = self._skipped, now + self.every, 0
        return skipped


def counted(message: str, skipped: int) -> str:
    """`message` with the count of the lines left out before it, if any (the text added
    holds no '%': `message` may be a %-format still to be filled)."""
    return (
        f"{message} (and {skipped} more such line(s) since the last one, not logged)"
        if skipped
        else message
    )


class QuietLog:
    """Logs at most one line per `every` seconds; the next line counts the ones skipped."""

    __slots__ = ("_interval", "logger")

    def __init__(self, logger: logging.Logger, every: float = 60.0) -> None:
        self.logger, self._interval = logger, Interval(every)

    def warning(self, message: str, *args: object) -> None:
        self.log(logging.WARNING, message, *args)

    def log(self, level: int, message: str, *args: object) -> None:
        skipped = self._interval.admit()
        if skipped is not None:
            self.logger.log(level, counted(message, skipped), *args)


class QuietFilter(logging.Filter):
    """The same for a logger prefork does not write to itself (uvicorn's, which warns
    "Invalid HTTP request received." once per garbage request): each distinct warning
    (by its format string, a fixed set in that code) passes at most once per `every`
    seconds. Errors always pass."""

    def __init__(self, every: float = 60.0) -> None:
        super().__init__()
        self.every = every
        self._kinds: dict[str, Interval] = {}  # by format string

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING or not isinstance(record.msg, str):
            return True
        interval = self._kinds.get(record.msg)
        if interval is None:
            interval = self._kinds[record.msg] = Interval(self.every)
        skipped = interval.admit()
        if skipped is None:
            return False
        record.msg = counted(record.msg, skipped)
        return True
