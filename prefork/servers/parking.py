"""Idle client connections the master holds for its workers.

Workers hand over keep-alive connections they cannot serve soon: while they run a long
request, and when they stop. The master watches them; when a client sends its next request,
the connection goes to a worker that is idle at that moment. The master never reads a byte
of it (it only peeks, to tell a request from a close), so the new owner parses everything.
"""

from __future__ import annotations

import collections
import logging
import selectors
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

from prefork.workers.handoff import Handed, send_connection

log = logging.getLogger("prefork.master")

# How long a parked connection with a request waits for an idle worker before it is dropped.
READY_WAIT_MAX = 120.0


@dataclass(eq=False)
class Candidate:
    """A worker that may take a parked client, and how many clients it holds."""

    channel: socket.socket
    connections: int


@dataclass(eq=False)
class Parked:
    sock: socket.socket
    peer: tuple[str, int]
    deadline: float
    unparsed: bytes = b""


class Parking:
    def __init__(self, selector: selectors.BaseSelector, keepalive: float) -> None:
        self._selector = selector
        self.keepalive = keepalive
        self._idle: set[Parked] = set()
        self._ready: collections.deque[Parked] = collections.deque()

    def park(self, handed: Handed) -> None:
        """Hold a connection a worker handed over. One whose client has already sent (some
        of) its next request is queued at once, for this turn's dispatch, rather than after
        the next wait for readiness."""
        handed.sock.setblocking(False)
        parked = Parked(
            handed.sock, handed.peer, time.monotonic() + self.keepalive, handed.unparsed
        )
        if parked.unparsed:
            self._queue(parked)
        else:
            self._settle(parked)

    def on_readable(self, parked: Parked) -> None:
        self._idle.discard(parked)
        self._selector.unregister(parked.sock)
        self._settle(parked)

    def _settle(self, parked: Parked) -> None:
        """Queue the connection if its client has spoken, close it if the client closed it,
        else watch it."""
        try:
            peeked = parked.sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            self._idle.add(parked)
            self._selector.register(parked.sock, selectors.EVENT_READ, parked)
            return
        except OSError:
            peeked = b""
        if not peeked:
            parked.sock.close()  # the client closed its idle connection
            return
        self._queue(parked)

    def _queue(self, parked: Parked) -> None:
        parked.deadline = time.monotonic() + READY_WAIT_MAX
        self._ready.append(parked)

    @property
    def waiting(self) -> int:
        """Connections whose client has spoken, not yet given to a worker."""
        return len(self._ready)

    def dispatch(self, candidates: Sequence[Candidate]) -> None:
        """Give connections whose client has spoken to the workers holding fewest."""
        while self._ready and candidates:
            parked = self._ready[0]
            target = min(candidates, key=lambda candidate: candidate.connections)
            if not send_connection(target.channel, parked.sock, parked.peer, parked.unparsed):
                return  # that worker went away; the next turn sees a fresh list
            target.connections += 1
            self._ready.popleft()
            parked.sock.close()

    def expire(self, now: float) -> None:
        for parked in [p for p in self._idle if p.deadline <= now]:
            self._idle.discard(parked)
            self._selector.unregister(parked.sock)
            parked.sock.close()
        while self._ready and self._ready[0].deadline <= now:
            stale = self._ready.popleft()
            log.warning(
                "dropped a connection from %s: no idle worker for %ds",
                stale.peer[0],
                READY_WAIT_MAX,
            )
            stale.sock.close()

    def close_all(self) -> None:
        for parked in list(self._idle):
            self._selector.unregister(parked.sock)
            parked.sock.close()
        for parked in self._ready:
            parked.sock.close()
        self._idle.clear()
        self._ready.clear()

    def close_copies(self) -> None:
        """In a forked child: close its copies without touching the shared epoll instance."""
        for parked in [*self._idle, *self._ready]:
            parked.sock.close()
