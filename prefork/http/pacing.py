"""When a single-threaded worker should leave pending connections to the other workers.

Every worker shares the listening socket. A worker that accepts a connection will serve its
request itself, one at a time, so it should accept only while it is the idlest, without ever
letting the queue starve when every worker is busy:

- an idle worker takes one pending connection per turn, leaving the rest to the other idle
  workers, which are woken too;
- right after serving requests it leaves pending connections to the others for at most
  ACCEPT_DEFER seconds; if they are still pending then, every worker is busy, and it takes
  up to BUSY_BATCH of them at once: one per turn would make the last of a burst of new
  clients wait for as many turns as there are connections ahead of it;
- while a connection it has just accepted has sent nothing yet (its request is most likely
  on the way), it stops accepting for at most FRESH_WINDOW seconds; after that the
  connection counts as a slow client and accepting resumes.

No I/O here: the event loop asks and applies the answers.
"""

from __future__ import annotations

import time
from collections.abc import Hashable

ACCEPT_DEFER = 0.005
FRESH_WINDOW = 0.05
BUSY_BATCH = 64


class AcceptPacer:
    __slots__ = ("_deferred_since", "fresh")

    def __init__(self) -> None:
        # Connections accepted silent, and when. Public: the event loop tells heard_from()
        # only while it is not empty (nearly never), saving every request a call.
        self.fresh: dict[Hashable, float] = {}
        self._deferred_since = 0.0

    def accepted_silent(self, conn: Hashable, now: float) -> None:
        """A connection was accepted and has sent nothing yet."""
        self.fresh[conn] = now

    def heard_from(self, conn: Hashable) -> None:
        """The connection sent something, or is gone."""
        self.fresh.pop(conn, None)

    def accept_quota(self, just_served: bool) -> int:
        """How many of the connections pending this turn to accept (0 = leave them)."""
        if not just_served:
            self._deferred_since = 0.0
            return 1
        now = time.monotonic()
        if not self._deferred_since:
            self._deferred_since = now
        if now - self._deferred_since < ACCEPT_DEFER:
            return 0
        self._deferred_since = 0.0
        return BUSY_BATCH

    def nothing_pending(self) -> None:
        """No connection was waiting this turn: someone else took it."""
        self._deferred_since = 0.0

    def paused_for(self, now: float) -> float:
        """Seconds to keep the listening sockets out of the selector; 0 to accept."""
        if not self.fresh:  # nearly always: asked on every turn of the serving loop
            return 0.0
        for conn, accepted in list(self.fresh.items()):
            if now - accepted >= FRESH_WINDOW:
                del self.fresh[conn]
        if not self.fresh:
            return 0.0
        return max(min(self.fresh.values()) + FRESH_WINDOW - now, 1e-4)
