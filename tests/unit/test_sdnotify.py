"""systemd readiness in-process: READY=1 once per generation, RELOADING=1 on a reload,
nothing without NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from prefork.ops import sdnotify


@pytest.fixture
def listener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    monkeypatch.setenv(sdnotify.NOTIFY_ENV, str(tmp_path / "notify"))
    yield sock
    sock.close()


def received(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


def test_ready_once_per_generation(listener: socket.socket) -> None:
    readiness = sdnotify.Readiness()
    readiness.serving(1, 2)
    assert received(listener) == []  # one HTTP worker of two serves: not yet
    readiness.serving(2, 2)
    readiness.serving(2, 2)
    ready = f"READY=1\nMAINPID={os.getpid()}\nSTATUS=serving with 2 HTTP worker(s)"
    assert received(listener) == [ready]
    readiness.reloading()
    (reloading,) = received(listener)
    assert reloading.startswith("RELOADING=1\nMONOTONIC_USEC=")
    readiness.serving(3, 3)
    assert received(listener) == [ready.replace("2 HTTP", "3 HTTP")]


def test_nothing_without_the_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(sdnotify.NOTIFY_ENV, raising=False)
    assert sdnotify.notify("READY=1") is False
    readiness = sdnotify.Readiness()
    readiness.serving(1, 1)
    assert readiness.announced  # announced once, though nobody listens
