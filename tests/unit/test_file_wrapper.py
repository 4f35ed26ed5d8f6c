"""wsgi.file_wrapper in-process: which bodies are files, the block fallback, a connection
sending a file until its socket is full."""

from __future__ import annotations

import io
import os
import socket
from pathlib import Path

import pytest

from prefork.http.connection import ClientGone, Connection, SendBudget
from prefork.http.parser import Limits
from prefork.wsgi.file_wrapper import FileWrapper, file_body
from tests.apps.files import pattern

MiB = 1 << 20


def test_only_a_regular_file_with_a_descriptor_has_a_file_body(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"0123456789")
    with open(path, "rb") as file:
        file.read(3)  # the position counts, not the descriptor's (Python read ahead)
        body = file_body(FileWrapper(file))
        assert body is not None and (body.fd, body.offset, body.left) == (file.fileno(), 3, 7)
    read_end, write_end = os.pipe()
    with open(read_end, "rb") as pipe, open(write_end, "wb"):
        assert file_body(FileWrapper(pipe)) is None
    with open("/proc/self/status", "rb") as proc_file:  # says 0 bytes, has more
        assert file_body(FileWrapper(proc_file)) is None
    assert file_body(FileWrapper(io.BytesIO(b"abc"))) is None
    assert file_body(FileWrapper(object())) is None  # no fileno at all


def test_the_fallback_reads_blocks_and_close_closes_the_file() -> None:
    data = io.BytesIO(pattern(20000))
    wrapper = FileWrapper(data, 8192)
    assert [len(block) for block in wrapper] == [8192, 8192, 3616]
    wrapper.close()
    assert data.closed
    FileWrapper(iter([b"x"])).close()  # a file-like without close(): nothing to do


def test_a_connection_sends_a_file_until_its_socket_is_full(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(pattern(8 * MiB))
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    conn = Connection(ours, ("127.0.0.1", 1), Limits(), SendBudget(MiB, MiB))
    with open(path, "rb") as file, ours, theirs:
        sent = conn.send_file(file.fileno(), 5, 8 * MiB)
        assert sent is not None and 0 < sent < 8 * MiB  # the socket took what it holds
        assert conn.send_file(file.fileno(), 5 + sent, 8 * MiB) is None  # full: no wait
        received = b""
        while len(received) < sent:
            received += theirs.recv(MiB)
        assert received == pattern(8 * MiB)[5 : 5 + sent]
        assert conn.send_file(file.fileno(), 8 * MiB, 100) == 0  # past the end of the file
        theirs.close()
        with pytest.raises(ClientGone):
            conn.send_file(file.fileno(), 0, 100)
