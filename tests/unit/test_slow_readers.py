"""A connection's send budget in-process: what the socket does not take is kept within
the connection's and the process's budget."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from prefork.http.connection import ClientGone, Connection, SendBudget
from prefork.http.parser import Limits

MiB = 1 << 20


def _pair_connection(budget: SendBudget | None) -> tuple[Connection, socket.socket]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    return Connection(ours, ("127.0.0.1", 1), Limits(), budget), theirs


def test_a_connection_keeps_what_the_socket_does_not_take_within_its_budget() -> None:
    budget = SendBudget(limit=64 * MiB, per_connection=4 * MiB)
    conn, theirs = _pair_connection(budget)
    data = bytes(range(256)) * (16 * 1024)  # 4 MiB
    conn.send(data, timeout=5)  # returns at once: nobody reads yet
    assert conn.unsent > 0 and budget.held == conn.unsent and budget.readers == 1
    received = bytearray()
    reader = threading.Thread(target=lambda: received.extend(_drain(theirs, len(data))))
    reader.start()
    while conn.unsent:
        conn.flush()
        time.sleep(0.001)
    reader.join(10)
    assert bytes(received) == data
    assert budget.held == 0 and budget.readers == 0
    conn.close()
    theirs.close()


def test_past_the_process_budget_a_write_waits_for_its_client() -> None:
    budget = SendBudget(limit=0, per_connection=4 * MiB)
    conn, theirs = _pair_connection(budget)
    with pytest.raises(ClientGone):  # nobody reads: waited for, then dropped
        conn.send(b"x" * (8 * MiB), timeout=0.2)
    conn.close()
    assert budget.held == 0 and budget.readers == 0  # a closed connection gives it back
    theirs.close()


def _drain(sock: socket.socket, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        data += chunk
    return bytes(data)
