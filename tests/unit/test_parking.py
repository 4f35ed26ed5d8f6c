"""The master's side of handing connections over (the channel, the parking), on real sockets."""

from __future__ import annotations

import selectors
import socket

from prefork.servers.parking import Candidate, Parking
from prefork.workers.handoff import (
    Handed,
    channel_pair,
    nudge,
    receive_connections,
    send_connection,
)


def _pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


def test_a_client_that_has_spoken_is_queued_when_parked() -> None:
    selector = selectors.DefaultSelector()
    parking = Parking(selector, keepalive=60)
    client, server = _pair()
    client.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    parking.park(Handed(server, ("127.0.0.1", 1)))
    assert parking.waiting == 1
    assert not selector.get_map()  # nothing left to wait for
    parking.close_all()
    client.close()


def test_a_silent_client_is_watched_then_queued_when_it_speaks() -> None:
    selector = selectors.DefaultSelector()
    parking = Parking(selector, keepalive=60)
    client, server = _pair()
    parking.park(Handed(server, ("127.0.0.1", 1)))
    assert parking.waiting == 0
    client.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    ((key, _),) = selector.select(1)
    parking.on_readable(key.data)
    assert parking.waiting == 1
    worker_end, master_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    parking.dispatch([Candidate(master_end, 0)])
    assert parking.waiting == 0
    _, fds, _, _ = socket.recv_fds(worker_end, 256, 1)
    assert len(fds) == 1  # the worker got the descriptor; the request is still unread on it
    with socket.socket(fileno=fds[0]) as passed:
        assert passed.recv(64) == b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
    for sock in (client, worker_end, master_end):
        sock.close()


def test_a_client_that_closed_is_dropped_when_parked() -> None:
    selector = selectors.DefaultSelector()
    parking = Parking(selector, keepalive=60)
    client, server = _pair()
    client.close()
    parking.park(Handed(server, ("127.0.0.1", 1)))
    assert parking.waiting == 0
    assert not selector.get_map()
    assert server.fileno() == -1


def test_a_nudge_wakes_the_master_and_carries_no_connection() -> None:
    master_end, worker_end = channel_pair()
    client, server = _pair()
    nudge(worker_end)
    assert send_connection(worker_end, server, ("10.0.0.7", 4242))
    received, closed = receive_connections(master_end)
    assert not closed
    assert [handed.peer for handed in received] == [("10.0.0.7", 4242)]
    assert received[0].unparsed == b""
    for handed in received:
        handed.sock.close()
    for sock in (master_end, worker_end, client, server):
        sock.close()


def test_unparsed_bytes_travel_with_the_connection_and_queue_it_at_once() -> None:
    """A worker that read the start of a next request passes it on with the socket: the
    master queues the connection without waiting for the client, and the worker it chooses
    receives those bytes first, then reads the rest from the socket."""
    master_end, worker_end = channel_pair()
    client, server = _pair()
    client.sendall(b"Host: x\r\n\r\n")  # the rest of the head, still in the kernel
    assert send_connection(worker_end, server, ("10.0.0.7", 4242), b"GET /next HTTP/1.1\r\n")
    server.close()
    (handed,), _ = receive_connections(master_end)
    assert handed.unparsed == b"GET /next HTTP/1.1\r\n"
    selector = selectors.DefaultSelector()
    parking = Parking(selector, keepalive=60)
    parking.park(handed)
    assert parking.waiting == 1 and not selector.get_map()
    parking.dispatch([Candidate(master_end, 0)])
    worker_end.setblocking(False)  # as the worker's loop reads it
    (passed,), _ = receive_connections(worker_end)
    assert passed.unparsed == b"GET /next HTTP/1.1\r\n"
    assert passed.sock.recv(64) == b"Host: x\r\n\r\n"
    for sock in (passed.sock, client, worker_end, master_end):
        sock.close()
