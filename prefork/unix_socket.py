"""Unix listening sockets: bound over a stale file but never over a live server, with the
configured mode and group set before the first connection, and removed at the end by the
server that made them (not by one that hands them to a new master, nor when systemd does)."""

from __future__ import annotations

import contextlib
import grp
import os
import socket
import stat

PROBE_TIMEOUT = 1.0  # seconds a connection to an existing socket file may take to be taken


class UnixListenError(Exception):
    """Raised with the reason only; prefork.sockets names the address and the option."""


def bind_unix(path: str, mode: int, group: str, backlog: int) -> socket.socket:
    _clear_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        # Before listen(): until then a client's connect is refused, so none gets in
        # with the umask's mode or the wrong group.
        os.chmod(path, mode)
        if group:
            _give_to_group(path, group)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return sock


def _clear_stale(path: str) -> None:
    """Remove a socket file nothing listens on (left by a server that was killed)."""
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(found.st_mode):
        raise UnixListenError("the file exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_TIMEOUT)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)  # stale: nothing accepts on it
        return
    except FileNotFoundError:
        return
    except TimeoutError:
        raise UnixListenError("another server is listening there (its backlog is full)") from None
    finally:
        probe.close()
    raise UnixListenError("another server is listening there")


def _give_to_group(path: str, group: str) -> None:
    try:
        gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise UnixListenError(f"no group named {group!r} (unix_socket_group)") from None
    try:
        os.chown(path, -1, gid)
    except OSError as exc:
        raise UnixListenError(
            f"cannot give the socket to group {group!r} (unix_socket_group): {exc.strerror}"
        ) from None


class SocketFiles:
    """The socket files a server removes when it stops for good."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[int, int]] = {}  # path: (device, inode) when claimed

    def claim(self, sock: socket.socket) -> None:
        """Remove `sock`'s file at the end (if it is a Unix socket with a path, and the
        file is still that socket's: another server may have replaced it)."""
        if sock.family != socket.AF_UNIX:
            return
        path = sock.getsockname()
        if not isinstance(path, str) or not path:  # abstract or unnamed: no file
            return
        with contextlib.suppress(OSError):
            found = os.stat(path)
            self._files[path] = (found.st_dev, found.st_ino)

    def remove(self) -> None:
        for path, identity in self._files.items():
            with contextlib.suppress(OSError):
                found = os.lstat(path)
                if (found.st_dev, found.st_ino) == identity:
                    os.unlink(path)
        self._files.clear()
