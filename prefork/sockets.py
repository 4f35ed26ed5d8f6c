"""Listening sockets: creation, and sockets inherited from systemd or a previous master."""

from __future__ import annotations

import os
import socket

from prefork.addresses import Address, http_address, of_socket, realtime_address
from prefork.config import Settings
from prefork.unix_socket import SocketFiles, UnixListenError, bind_unix

BACKLOG = 2048
INHERIT_ENV = "PREFORK_INHERIT_FDS"
SD_LISTEN_FDS_START = 3


class ListenError(Exception):
    """A socket could not be bound; the message names the address and the option."""


def listen_http(settings: Settings) -> socket.socket:
    address = http_address(settings)
    return listen(address, settings, "http_interface" if address.unix else "http_port")


def http_listeners(settings: Settings, files: SocketFiles) -> list[socket.socket]:
    """The inherited listening sockets, else a new HTTP one; `files` removes at the end
    those whose files are not systemd's."""
    inherited, from_systemd = inherited_listeners()
    listeners = inherited or [listen_http(settings)]
    if not from_systemd:
        for sock in listeners:
            files.claim(sock)
    return listeners


def listen_realtime(settings: Settings) -> socket.socket:
    address = realtime_address(settings)
    return listen(address, settings, "gevent_interface" if address.unix else "gevent_port")


def listen(address: Address, settings: Settings, option: str) -> socket.socket:
    """A bound, listening socket; `option` names the setting the address comes from, for
    the error."""
    try:
        if address.unix:
            return _listen_unix(address.path, settings)
        return _listen_tcp(address, settings.reuse_port)
    except (OSError, UnixListenError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ListenError(f"cannot listen on {address.display()} ({option}): {reason}") from None


def _listen_unix(path: str, settings: Settings) -> socket.socket:
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise UnixListenError(f"the directory {directory} does not exist")
    return bind_unix(path, int(settings.unix_socket_mode, 8), settings.unix_socket_group, BACKLOG)


def _listen_tcp(address: Address, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    host = address.host or ("::" if family == socket.AF_INET6 else "0.0.0.0")
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        no_delay(sock)  # before listen(): no connection is accepted without it
        sock.bind((host.strip("[]"), address.port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def inherited_listeners() -> tuple[list[socket.socket], bool]:
    """Sockets handed over by a previous master (USR2, or threaded mode's HUP) or by
    systemd socket activation, and whether systemd gave them (their files are then its own
    to remove).

    Consumes the environment variables so that processes started later do not see them.
    """
    fds: list[int] = []
    inherited = os.environ.pop(INHERIT_ENV, "")
    if inherited:
        fds = [int(fd) for fd in inherited.split(",") if fd]
    elif os.environ.get("LISTEN_PID") == str(os.getpid()):
        count = int(os.environ.get("LISTEN_FDS", "0"))
        fds = list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count))
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    return [socket.socket(fileno=fd) for fd in fds], bool(fds) and not inherited


def no_delay(sock: socket.socket) -> None:
    """TCP_NODELAY on a listening socket: Linux copies it to each connection accepted from
    it (saving each a system call), elsewhere the event loop sets it per connection. A
    response's later writes (a streamed body) then leave at once instead of waiting for
    the client's ACK."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def handover_env(listeners: list[socket.socket]) -> dict[str, str]:
    """Environment that lets an exec'd prefork pick up `listeners` (made inheritable here)."""
    for sock in listeners:
        sock.set_inheritable(True)
    return {INHERIT_ENV: ",".join(str(s.fileno()) for s in listeners)}


def display_address(sock: socket.socket) -> str:
    return of_socket(sock).display()
