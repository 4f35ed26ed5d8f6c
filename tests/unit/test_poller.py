"""The event loop's poller, with epoll and with the poll() fallback of systems without it,
and the options of the sockets it watches."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator

import pytest

from prefork.addresses import Address
from prefork.config import Settings
from prefork.http import poller
from prefork.http.connection import Connection
from prefork.http.loop import EventLoop, Timeouts
from prefork.http.parser import Limits
from prefork.http.poller import Poller
from prefork.http.request import Request
from prefork.sockets import listen


@pytest.fixture(params=["epoll", "poll"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "poll":
        monkeypatch.setattr(poller, "_EPOLL", False)
        monkeypatch.setattr(poller, "_READ", select.POLLIN)
        monkeypatch.setattr(poller, "_EXCLUSIVE", 0)
    yield request.param


def test_select_returns_the_objects_of_readable_descriptors(mode: str) -> None:
    watcher = Poller()
    pairs = [socket.socketpair() for _ in range(3)]
    for index, (ours, _) in enumerate(pairs):
        watcher.register(ours.fileno(), f"conn {index}")
    assert watcher.select(0.0) == []
    pairs[0][1].send(b"x")
    pairs[2][1].close()  # a closed peer is reported too: the reader finds the end
    assert sorted(watcher.select(0.5)) == ["conn 0", "conn 2"]  # type: ignore[type-var]
    watcher.unregister(pairs[0][0].fileno())
    assert watcher.select(0.0) == ["conn 2"]
    for ours, theirs in pairs:
        ours.close()
        theirs.close()


def test_listening_socket_registered_exclusive_reports_connections(mode: str) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    watcher = Poller()
    watcher.register(listener.fileno(), listener, exclusive=True)
    assert watcher.select(0.0) == []
    client = socket.create_connection(listener.getsockname())
    assert watcher.select(1.0) == [listener]
    client.close()
    listener.close()


@pytest.mark.parametrize("made_by", ["prefork", "elsewhere"])
def test_accepted_connections_have_tcp_nodelay(made_by: str) -> None:
    """Set on the listener (by prefork.sockets.listen, or by the loop for a socket made
    elsewhere: systemd's, a previous master's) and inherited by accepted connections."""
    if made_by == "prefork":
        listener = listen(Address("127.0.0.1", 0), Settings(), "http_port")
    else:
        listener = socket.create_server(("127.0.0.1", 0))
        assert not listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    seen: list[int] = []

    def dispatch(conn: Connection, request: Request) -> bool:
        seen.append(conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        return False

    loop = EventLoop(Limits(), Timeouts(5.0, 5.0, 5.0), dispatch, inline=True)
    loop.add_listener(listener)
    with socket.create_connection(listener.getsockname()) as client:
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            loop.run_once(0.1)
    loop.stop_accepting()
    assert seen == [1]
