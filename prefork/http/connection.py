"""One client connection: its socket, its parser, and the non-blocking writes to it.

A response is written with `send`: what the socket does not take at once is kept (in an
HTTP worker, whose loop sends it as the client reads, see `SendBudget`) or waited for (in
threaded mode, where the serving thread is the client's own). Kept bytes are references to
the application's own buffers, never copies.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import os
import select
import socket
import struct
import termios
import time
from typing import Protocol

from prefork.http.parser import Limits, RequestParser

RECV_SIZE = 65536
_IOV_MAX = 64  # buffers per sendmsg (Linux takes 1024; a few cover any socket buffer)
_OUTQ = struct.Struct("i")


class ClientGone(Exception):
    """The client closed the connection or stopped reading within the send timeout."""


class SendBudget:
    """How much of their responses one process keeps for clients that read slowly.

    `per_connection` bounds how far a streamed body is drawn ahead of its client; `limit`
    bounds what the process keeps in all: past it, a response is waited for in the serving
    code, as in threaded mode (a limit of 0: always).
    """

    __slots__ = ("held", "limit", "per_connection", "readers")

    def __init__(self, limit: int, per_connection: int) -> None:
        self.limit = limit
        self.per_connection = per_connection
        self.held = 0  # bytes kept, over every connection
        self.readers = 0  # connections with bytes kept


class Sending(Protocol):
    """The rest of a response the event loop sends while the client reads (wsgi.handler)."""

    def resume(self) -> bool | None:
        """Send (and draw from the application) what the client can take now; None while
        the response goes on, else whether the connection may carry another request."""

    def abandon(self) -> None:
        """The connection is closed before the end of the response."""


class Connection:
    """A client socket, always non-blocking; reads come from the event loop only."""

    __slots__ = (
        "ahead",
        "budget",
        "deadline",
        "fd",
        "in_request",
        "kept",
        "parser",
        "peer",
        "queued",
        "sending",
        "served",
        "sock",
        "unsent",
    )

    def __init__(
        self,
        sock: socket.socket,
        peer: tuple[str, int],
        limits: Limits,
        budget: SendBudget | None = None,
    ) -> None:
        self.sock = sock
        self.fd = sock.fileno()  # kept: the event loop unregisters it, also once closed
        self.peer = peer
        self.parser = RequestParser(limits)
        self.deadline = 0.0
        self.in_request = False
        self.served = 0
        self.budget = budget  # None: writes wait for the client (threaded mode)
        # How far ahead of a slow reader a streamed body is drawn (`unsent` never exceeds
        # it without a budget: every write waits).
        self.ahead = budget.per_connection if budget is not None else 1 << 62
        self.kept: collections.deque[memoryview] = collections.deque()
        self.unsent = 0  # bytes in `kept`
        self.sending: Sending | None = None  # a response the event loop finishes
        self.queued = 0  # bytes in the kernel's send queue when the loop last looked

    def receive(self) -> bool:
        """Feed what has arrived to the parser; False when the client has closed."""
        try:
            data = self.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        if not data:
            return False
        self.parser.feed(data)
        return True

    def send(self, data: bytes, timeout: float) -> None:
        """Send `data`, keeping what the socket does not take (when this process keeps
        responses for slow readers and has room left), else waiting for the client as
        `send_all` does. Raises ClientGone."""
        if self.unsent:  # earlier bytes wait: these go after them
            self._keep(memoryview(data))
            self.flush()
        else:
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                raise ClientGone(str(exc)) from None
            if sent == len(data):
                return  # nearly always: it all fitted in the socket buffer
            self._keep(memoryview(data)[sent:])
        budget = self.budget
        if budget is None or budget.held > budget.limit:
            self.send_kept(timeout)

    def _keep(self, data: memoryview) -> None:
        if not self.unsent and self.budget is not None:
            self.budget.readers += 1
        self.kept.append(data)
        self.unsent += len(data)
        if self.budget is not None:
            self.budget.held += len(data)

    def flush(self) -> int:
        """Send what the socket takes of the kept bytes without waiting; how many it took.
        Raises ClientGone."""
        kept = self.kept
        try:
            sent = self.sock.sendmsg(list(kept)[:_IOV_MAX] if len(kept) > 1 else kept)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            raise ClientGone(str(exc)) from None
        self._sent(sent)
        return sent

    def send_file(self, fd: int, offset: int, count: int) -> int | None:
        """Send up to `count` bytes of the file `fd` from `offset` with sendfile(2), without
        waiting; how many the socket took (0: the file ends before), None when it takes
        nothing now. Kept bytes must have been sent first. Raises ClientGone, and OSError
        for a file that cannot be read."""
        try:
            return os.sendfile(self.fd, fd, offset, count)
        except (BlockingIOError, InterruptedError):
            return None
        except (ConnectionError, TimeoutError) as exc:  # reset, broken pipe: not the file's
            raise ClientGone(str(exc)) from None

    def _sent(self, count: int) -> None:
        """Forget the first `count` kept bytes."""
        kept = self.kept
        left = count
        while left:
            first = kept[0]
            if len(first) > left:
                kept[0] = first[left:]
                break
            left -= len(first)
            kept.popleft()
        self.unsent -= count
        budget = self.budget
        if budget is not None:
            budget.held -= count
            if not self.unsent:
                budget.readers -= 1

    def in_kernel(self) -> int:
        """Bytes the kernel holds, sent but not acknowledged or not sent yet (0 where it
        cannot tell): less than before means the client has read some."""
        try:
            raw = fcntl.ioctl(self.fd, termios.TIOCOUTQ, b"\0\0\0\0")
        except OSError:
            return 0
        count: int = _OUTQ.unpack(raw)[0]
        return count

    def send_kept(self, timeout: float) -> None:
        """Wait until every kept byte is sent; raises ClientGone (a stalled reader is
        dropped after `timeout` without progress)."""
        deadline = 0.0
        while self.unsent:
            if self.flush():
                deadline = 0.0
            else:
                deadline = deadline or time.monotonic() + timeout
                self.wait_writable(deadline)

    def send_all(self, data: bytes, timeout: float) -> None:
        """Send everything or raise ClientGone; a stalled reader is dropped after `timeout`."""
        self.send(data, timeout)
        self.send_kept(timeout)

    def send_final(self, data: bytes, timeout: float) -> None:
        """Send a last response and end the connection so that the client can read it."""
        with contextlib.suppress(ClientGone, OSError):
            self.send_all(data, timeout)
            self.sock.shutdown(socket.SHUT_WR)
            self.discard_unread()

    def discard_unread(self) -> None:
        """Read what the client already sent, so closing does not reset the connection.

        Closing a socket with unread input makes the kernel send RST, and the client may then
        lose the response it has not read yet.
        """
        for _ in range(16):
            try:
                if not self.sock.recv(RECV_SIZE):
                    return
            except (BlockingIOError, InterruptedError):
                return

    def wait_writable(self, deadline: float) -> None:
        """Wait for room in the socket until `deadline` (monotonic); raises ClientGone
        once it has passed."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ClientGone("send timeout")
        poller = select.poll()
        poller.register(self.sock, select.POLLOUT)
        poller.poll(remaining * 1000)

    def close(self) -> None:
        if self.unsent:
            self._sent(self.unsent)  # dropped with the connection
        with contextlib.suppress(OSError):
            self.sock.close()
