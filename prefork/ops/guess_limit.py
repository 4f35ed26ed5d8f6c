"""How many failed password checks a client address may make: `limit` per `window`
seconds, then it waits (429 with Retry-After) and no password is checked for it, so an
attacker can neither guess quickly nor make the server compute expensive hashes.

    limit = FailureLimit()
    wait = limit.take(address)   # 0: check the password; else refuse for `wait` seconds
    if password_ok: limit.refund(address)

In-process: each HTTP worker counts for itself (the bound is workers x limit per window
for one address); threaded mode has one count shared by its threads.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

LIMIT = 10
WINDOW = 60.0  # seconds
CAPACITY = 4096  # addresses tracked; the least recently seen is forgotten first


class FailureLimit:
    def __init__(
        self,
        limit: int = LIMIT,
        window: float = WINDOW,
        capacity: int = CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._window = window
        self._capacity = capacity
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()  # threaded mode checks passwords in several threads

    def take(self, address: str) -> int:
        """0 when a check may go ahead, counted as a failure until refunded (so concurrent
        checks cannot overshoot the limit); else the seconds until a slot frees."""
        now = self._clock()
        with self._lock:
            failures = self._entry(address)
            while failures and failures[0] <= now - self._window:
                failures.popleft()
            if len(failures) >= self._limit:
                return max(1, math.ceil(failures[0] + self._window - now))
            failures.append(now)
            return 0

    def refund(self, address: str) -> None:
        """The check succeeded: it was not a failure (other addresses keep their counts)."""
        with self._lock:
            failures = self._failures.get(address)
            if failures:
                failures.pop()
            if not failures:
                self._failures.pop(address, None)

    def tracked(self) -> int:
        return len(self._failures)

    def _entry(self, address: str) -> deque[float]:
        failures = self._failures.get(address)
        if failures is not None:
            self._failures.move_to_end(address)
            return failures
        if len(self._failures) >= self._capacity:
            self._failures.popitem(last=False)
        failures = self._failures[address] = deque(maxlen=self._limit)
        return failures
