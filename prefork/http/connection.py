"""One client connection: its socket, its parser, and the non-blocking writes to it."""

from __future__ import annotations

import contextlib
import select
import socket
import time

from prefork.http.parser import Limits, RequestParser

RECV_SIZE = 65536


class ClientGone(Exception):
    """The client closed the connection or stopped reading within the send timeout."""


class Connection:
    """A client socket, always non-blocking; reads come from the event loop only."""

    __slots__ = ("deadline", "fd", "in_request", "parser", "peer", "served", "sock")

    def __init__(self, sock: socket.socket, peer: tuple[str, int], limits: Limits) -> None:
        self.sock = sock
        self.fd = sock.fileno()  # kept: the event loop unregisters it, also once closed
        self.peer = peer
        self.parser = RequestParser(limits)
        self.deadline = 0.0
        self.in_request = False
        self.served = 0

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

    def send_all(self, data: bytes | memoryview, timeout: float) -> None:
        """Send everything or raise ClientGone; a stalled reader is dropped after `timeout`."""
        remaining = data
        deadline = 0.0
        while True:
            try:
                sent = self.sock.send(remaining)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                raise ClientGone(str(exc)) from None
            if sent == len(remaining):
                return  # usually at once: it all fitted in the socket buffer
            if sent:
                remaining = memoryview(remaining)[sent:]
            else:
                deadline = deadline or time.monotonic() + timeout
                self._wait_writable(deadline)

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

    def _wait_writable(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ClientGone("send timeout")
        poller = select.poll()
        poller.register(self.sock, select.POLLOUT)
        poller.poll(remaining * 1000)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
