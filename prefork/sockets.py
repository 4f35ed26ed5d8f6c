"""Listening sockets: creation, and sockets inherited from systemd or a previous master."""

from __future__ import annotations

import os
import socket

BACKLOG = 2048
INHERIT_ENV = "PREFORK_INHERIT_FDS"
SD_LISTEN_FDS_START = 3


class ListenError(Exception):
    """A socket could not be bound; the message names the address and the option."""


def listen(interface: str, port: int, *, reuse_port: bool = False,
           option: str = "http_port") -> socket.socket:
    """A bound, listening TCP socket; an interface containing ':' is IPv6. `option` names
    the setting the port comes from, for the error."""
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    host = interface or ("::" if family == socket.AF_INET6 else "0.0.0.0")
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        no_delay(sock)  # before listen(): no connection is accepted without it
        sock.bind((host.strip("[]"), port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise ListenError(f"cannot listen on {address} ({option}): "
                          f"{exc.strerror or exc}") from None
    return sock


def inherited_listeners() -> list[socket.socket]:
    """Sockets handed over by a previous master (USR2) or by systemd socket activation.

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
    return [socket.socket(fileno=fd) for fd in fds]


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
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
