"""The master's listening sockets: opened at start or inherited (from systemd socket
activation, or from the old master during an upgrade: servers/upgrade.py), and kept
across a reload that asks for another address."""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
from dataclasses import dataclass, field

from prefork.addresses import http_address, of_socket, realtime_address
from prefork.config import Settings
from prefork.db.startup import DatabaseRuntime
from prefork.db.target import resolve_target
from prefork.sockets import (
    display_address,
    inherited_listeners,
    listen_http,
    listen_realtime,
)
from prefork.unix_socket import SocketFiles

log = logging.getLogger("prefork.master")

REALTIME_FD_ENV = "PREFORK_REALTIME_FD"  # which inherited socket is the realtime one


@dataclass
class Listeners:
    http: list[socket.socket]
    realtime: socket.socket | None = None
    # The socket files this master made: removed at its final stop, unless handed over.
    files: SocketFiles = field(default_factory=SocketFiles)

    def all(self) -> list[socket.socket]:
        return self.http + ([self.realtime] if self.realtime is not None else [])

    def displayed(self) -> list[str]:
        return [display_address(s) for s in self.all() if s.fileno() >= 0]

    def close(self) -> None:
        for sock in self.all():
            sock.close()


def open_listeners(settings: Settings, realtime_wanted: bool) -> Listeners:
    inherited, from_systemd = inherited_listeners()
    if inherited:
        log.info("using %d inherited listening socket(s)", len(inherited))
        # From an upgrade, the old master names the realtime socket; from systemd, its
        # address tells it.
        realtime_fd = int(os.environ.pop(REALTIME_FD_ENV, "") or -1)
        wanted = realtime_address(settings)
        realtime = [
            sock
            for sock in inherited
            if sock.fileno() == realtime_fd or (realtime_fd < 0 and wanted.same_socket(sock))
        ]
        listeners = Listeners(
            [s for s in inherited if s not in realtime], realtime[0] if realtime else None
        )
    else:
        listeners = Listeners([listen_http(settings)])
    if realtime_wanted and listeners.realtime is None:
        listeners.realtime = listen_realtime(settings)
    for sock in listeners.all():
        if not (from_systemd and sock in inherited):
            listeners.files.claim(sock)
    return listeners


def with_realtime_port(settings: Settings, listeners: Listeners) -> Settings:
    """Port 0 asks for any free port: workers direct clients to the one chosen."""
    if listeners.realtime is None:
        return settings
    log.info(
        "realtime service (websocket, long-polling) on %s", display_address(listeners.realtime)
    )
    bound = of_socket(listeners.realtime)
    return settings if bound.unix else dataclasses.replace(settings, gevent_port=bound.port)


def reloaded_settings(
    running: Settings, new: Settings, listeners: Listeners, database: DatabaseRuntime | None
) -> Settings:
    """`new`, with the addresses and database the running master keeps: a reload (HUP)
    cannot change them; each change asked for is logged."""
    if http_address(new) != http_address(running):
        log.warning(
            "http_port/http_interface changes need a restart or an upgrade (USR2); keeping %s",
            display_address(listeners.http[0]),
        )
    if database is not None and resolve_target(new) != resolve_target(running):
        log.warning(
            "database settings changes need a restart or an upgrade (USR2); keeping %s",
            database.target.describe(),
        )
    if listeners.realtime is None:
        return new
    return _keep_realtime_address(running, new, listeners.realtime)


def _keep_realtime_address(running: Settings, new: Settings, realtime: socket.socket) -> Settings:
    bound = of_socket(realtime)
    wanted = realtime_address(new)
    if not (wanted.same_socket(realtime) or (wanted.port == 0 and not wanted.unix)):
        log.warning(
            "gevent_port/gevent_interface changes need a restart or an upgrade (USR2); keeping %s",
            bound.display(),
        )
    if bound.unix:
        return dataclasses.replace(new, gevent_interface=running.gevent_interface)
    return dataclasses.replace(new, gevent_port=bound.port)
