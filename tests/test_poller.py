"""The event loop's poller, with epoll and with the poll() fallback of systems without it."""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator

import pytest

from prefork.http import poller
from prefork.http.poller import Poller


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
