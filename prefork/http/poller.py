"""Readiness of the event loop's file descriptors: epoll where the system has it, poll()
elsewhere. Everything is watched for reading, except a connection whose client has not read
its whole response yet, watched for room to write instead (`modify`).

Not the selectors module, for two reasons measured on the hot path:
- listening sockets shared by several workers are registered with EPOLLEXCLUSIVE, so a new
  connection wakes one waiting worker instead of every idle one (the others would wake to
  find nothing to accept: with five workers, most of the wake-ups of a `Connection: close`
  load);
- select() returns the registered objects directly: selectors builds a key and an event
  mask per ready descriptor, a cost paid on every turn of a serving loop.
"""

from __future__ import annotations

import select
from typing import Any

_EPOLL = hasattr(select, "epoll")
_READ = select.EPOLLIN if _EPOLL else select.POLLIN
_WRITE = select.EPOLLOUT if _EPOLL else select.POLLOUT
_EXCLUSIVE = getattr(select, "EPOLLEXCLUSIVE", 0)


class Poller:
    """Maps each watched descriptor to the object select() returns for it."""

    def __init__(self) -> None:
        # Lives as long as its event loop, which lives as long as its process.
        self._poller: Any = select.epoll() if _EPOLL else select.poll()
        self._watched: dict[int, object] = {}

    def register(self, fd: int, data: object, *, exclusive: bool = False) -> None:
        """Watch `fd`; with `exclusive`, one of the processes waiting on it is woken, not
        all (a listening socket shared by workers)."""
        self._poller.register(fd, _READ | (_EXCLUSIVE if exclusive else 0))
        self._watched[fd] = data

    def modify(self, fd: int, *, writable: bool) -> None:
        """Watch a registered `fd` for room to write instead of data to read, or back."""
        self._poller.modify(fd, _WRITE if writable else _READ)

    def unregister(self, fd: int) -> None:
        del self._watched[fd]
        self._poller.unregister(fd)

    def select(self, timeout: float) -> list[object]:
        """The objects of the descriptors ready (or closed, or in error)."""
        if _EPOLL:
            ready = self._poller.poll(timeout)
        else:
            ready = self._poller.poll(max(0, int(timeout * 1000)))
        watched = self._watched
        # A descriptor unregistered by an earlier object's handling is skipped by the
        # caller, which checks that the object is still its own.
        return [watched[fd] for fd, _ in ready if fd in watched]
