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
