"""Where the services listen, from the settings: a TCP address or a Unix socket's path."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from prefork.config import Settings
from prefork.config.kinds import UNIX_PREFIX

# A Unix socket's clients have no network address; the environ says so with these.
UNIX_SERVER_NAME, UNIX_SERVER_PORT = "localhost", 80


@dataclass(frozen=True)
class Address:
    host: str = ""  # TCP: an IPv4 or IPv6 address, empty for every IPv4 interface
    port: int = 0
    path: str = ""  # a Unix socket's path (then host and port are unused)

    @property
    def unix(self) -> bool:
        return bool(self.path)

    def display(self) -> str:
        return self._named(self.host or "0.0.0.0")

    def upstream(self) -> str:
        """The address as an nginx `server` line names it: the loopback address for a
        server on every interface."""
        return self._named(self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1")

    def _named(self, host: str) -> str:
        if self.path:
            return UNIX_PREFIX + self.path
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def same_socket(self, sock: socket.socket) -> bool:
        """Whether `sock` (inherited, e.g. from systemd) is the one for this address: the
        same path, or for TCP the same port (systemd may bind another interface)."""
        if sock.family == socket.AF_UNIX:
            return bool(self.path) and socket_path(sock) == self.path
        return not self.path and int(sock.getsockname()[1]) == self.port


def parse(interface: str, port: int) -> Address:
    if interface.startswith(UNIX_PREFIX):
        return Address(path=interface[len(UNIX_PREFIX) :])
    return Address(interface, port)


def http_address(settings: Settings) -> Address:
    return parse(settings.http_interface, settings.http_port)


def realtime_address(settings: Settings) -> Address:
    """The realtime process's: gevent_interface, else http_interface's host (loopback when
    HTTP is on a Unix socket: a server put behind a local proxy is not opened to the
    network by its realtime port), with gevent_port."""
    interface = settings.gevent_interface or settings.http_interface
    if interface.startswith(UNIX_PREFIX) and not settings.gevent_interface:
        interface = "127.0.0.1"
    return parse(interface, settings.gevent_port)


def socket_path(sock: socket.socket) -> str:
    """A Unix socket's path ('@name' for an abstract one, as systemd writes it)."""
    name = sock.getsockname()
    if isinstance(name, bytes):
        return "@" + name[1:].decode(errors="replace")
    return str(name)


def of_socket(sock: socket.socket) -> Address:
    if sock.family == socket.AF_UNIX:
        return Address(path=socket_path(sock))
    host, port = sock.getsockname()[:2]
    return Address(host, int(port))
