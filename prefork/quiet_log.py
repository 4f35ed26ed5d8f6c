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


class QuietLog:
    """Logs at most one line per `every` seconds; the next line counts the ones skipped."""

    __slots__ = ("_next", "_skipped", "every", "logger")

    def __init__(self, logger: logging.Logger, every: float = 60.0) -> None:
        self.logger, self.every = logger, every
        self._next, self._skipped = 0.0, 0

    def warning(self, message: str, *args: object) -> None:
        self.log(logging.WARNING, message, *args)

    def log(self, level: int, message: str, *args: object) -> None:
        now = time.monotonic()
        if now < self._next:
            self._skipped += 1
            return
        self._next = now + self.every
        if self._skipped:
            message += " (and %d more such line(s) since the last one, not logged)"
            args = (*args, self._skipped)
        self._skipped = 0
        self.logger.log(level, message, *args)


class QuietFilter(logging.Filter):
    """The same for a logger prefork does not write to itself (uvicorn's, which warns
    "Invalid HTTP request received." once per garbage request): each distinct warning
    (by its format string, a fixed set in that code) passes at most once per `every`
    seconds. Errors always pass."""

    def __init__(self, every: float = 60.0) -> None:
        super().__init__()
        self.every = every
        self._kinds: dict[str, list[float]] = {}  # msg -> [next time, skipped]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING or not isinstance(record.msg, str):
            return True
        now = time.monotonic()
        kind = self._kinds.setdefault(record.msg, [0.0, 0])
        if now < kind[0]:
            kind[1] += 1
            return False
        if kind[1]:
            record.msg += f" (and {int(kind[1])} more such line(s) since the last one, not logged)"
        kind[0], kind[1] = now + self.every, 0
        return True
