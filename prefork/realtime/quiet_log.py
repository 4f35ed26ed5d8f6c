"""One log line per interval for what clients can repeat at will (malformed messages): a
client sending garbage in a loop must not fill the disk."""

from __future__ import annotations

import logging
import time


class QuietLog:
    """Logs at most one line per `every` seconds; the next line counts the ones skipped."""

    def __init__(self, logger: logging.Logger, every: float = 60.0) -> None:
        self.logger, self.every = logger, every
        self._next, self._skipped = 0.0, 0

    def warning(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now < self._next:
            self._skipped += 1
            return
        self._next = now + self.every
        if self._skipped:
            message += " (and %d more such message(s) not logged)"
            args = (*args, self._skipped)
        self._skipped = 0
        self.logger.warning(message, *args)
