"""Passing idle client connections between processes (SCM_RIGHTS over a socketpair).

A worker that is busy with a long request cannot answer the next request on its other
keep-alive connections; a worker that stops must not drop them. Either way it sends them to
the master, which parks them and passes each one, when its client speaks, to an idle worker.
A connection travels with the bytes its sender had read but not parsed yet (the start of a
next request, at most MAX_UNPARSED of them); the socket itself is shared, so whatever the
client sends after them is read by the new owner.

One message per connection: the descriptor, and "host port" + NUL + the unparsed bytes. A
message without a descriptor only wakes the master: the worker's state changed (see `nudge`).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

# Unix seqpacket messages of this size fit the default socket buffers (about 200 KiB).
MAX_UNPARSED = 32768
MAX_MESSAGE = 256 + MAX_UNPARSED


@dataclass(eq=False)
class Handed:
    """A connection passed between processes."""

    sock: socket.socket
    peer: tuple[str, int]
    unparsed: bytes = b""  # what the sender read of the client's next request


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """(master end, worker end); message boundaries are kept."""
    master_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    master_end.setblocking(False)
    return master_end, worker_end


def send_connection(
    channel: socket.socket, sock: socket.socket, peer: tuple[str, int], unparsed: bytes = b""
) -> bool:
    """Pass `sock` (and at most MAX_UNPARSED bytes read from it) over `channel`; False when
    the other end is gone or full."""
    payload = f"{peer[0]} {peer[1]}".encode() + b"\0" + unparsed
    try:
        socket.send_fds(channel, [payload], [sock.fileno()])
    except OSError:
        return False
    return True


def nudge(channel: socket.socket) -> None:
    """Wake the master now rather than at its next tick: this worker became ready, or
    retiring (the master starts or stops a worker on either)."""
    try:
        channel.send(b"state")
    except OSError:
        pass  # full or gone: the master's tick sees the state anyway


Received = list[Handed]


def receive_connections(channel: socket.socket) -> tuple[Received, bool]:
    """(every connection waiting on a non-blocking `channel`, whether the other end closed)."""
    received: Received = []
    while True:
        try:
            payload, fds, _, _ = socket.recv_fds(channel, MAX_MESSAGE, 1)
        except (BlockingIOError, InterruptedError):
            return received, False
        except OSError:
            return received, True
        if not payload and not fds:  # no empty message is ever sent: end of stream
            return received, True
        if not fds:
            continue  # a nudge: waking the reader was all it was for
        address, _, unparsed = payload.partition(b"\0")
        host, _, port = address.decode(errors="replace").partition(" ")
        for fd in fds:
            received.append(Handed(socket.socket(fileno=fd), (host, int(port or 0)), unparsed))
