"""The master's parking of handed-over connections, on real socket pairs."""

from __future__ import annotations

import selectors
import socket

from prefork.servers.parking import Candidate, Parking


def _pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


def test_a_client_that_has_spoken_is_queued_when_parked() -> None:
    selector = selectors.DefaultSelector()
    parking = Parking(selector, keepalive=60)
    client, server = _pair()
    client.sendall(b"GET / HTTP/1.1\r\n\r\n")
    parking.park(server, ("127.0.0.1", 1))
    assert parking.waiting == 1
    assert not selector.get_map()  # nothing left to wait for
    parking.close_all()
    client.close()


def test_a_silent_client_is_watched_then_queued_when_it_speaks() -> None:
    selector = selectors.DefaultSelector()
    parking = Parking(selector, keepalive=60)
    client, server = _pair()
    parking.park(server, ("127.0.0.1", 1))
    assert parking.waiting == 0
    client.sendall(b"GET / HTTP/1.1\r\n\r\n")
    (key, _), = selector.select(1)
    parking.on_readable(key.data)
    assert parking.waiting == 1
    worker_end, master_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    parking.dispatch([Candidate(master_end, 0)])
    assert parking.waiting == 0
    _, fds, _, _ = socket.recv_fds(worker_end, 256, 1)
    assert len(fds) == 1  # the worker got the descriptor; the request is still unread on it
    with socket.socket(fileno=fds[0]) as passed:
        assert passed.recv(64) == b"GET / HTTP/1.1\r\n\r\n"
    for sock in (client, worker_end, master_end):
        sock.close()


def test_a_client_that_closed_is_dropped_when_parked() -> None:
    selector = selectors.DefaultSelector()
    parking = Parking(selector, keepalive=60)
    client, server = _pair()
    client.close()
    parking.park(server, ("127.0.0.1", 1))
    assert parking.waiting == 0
    assert not selector.get_map()
    assert server.fileno() == -1
