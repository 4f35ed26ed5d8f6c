"""Listening sockets: address parsing, IPv4/IPv6, reuse options."""

from __future__ import annotations

import socket

BACKLOG = 2048


def listen(interface: str, port: int) -> socket.socket:
    """A bound, listening TCP socket; an interface containing ':' is IPv6."""
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    host = interface or ("::" if family == socket.AF_INET6 else "0.0.0.0")
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def display_address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
