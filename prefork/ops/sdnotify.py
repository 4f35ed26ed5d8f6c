"""systemd's readiness protocol (sd_notify): one datagram to $NOTIFY_SOCKET per state
change; nothing at all when systemd did not ask for it."""

from __future__ import annotations

import os
import socket
import time

NOTIFY_ENV = "NOTIFY_SOCKET"


def notify(*fields: str) -> bool:
    """Send "READY=1", "RELOADING=1", "STOPPING=1", "STATUS=..." and the like; False when
    there is no socket or the send failed (systemd is not waiting for us then)."""
    address = os.environ.get(NOTIFY_ENV, "")
    if not address:
        return False
    if address.startswith("@"):  # the abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto("\n".join(fields).encode(), address)
    except OSError:
        return False
    return True


def reloading() -> bool:
    # Type=notify-reload wants the time of the reload request with RELOADING=1.
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify("RELOADING=1", f"MONOTONIC_USEC={usec}")


class Readiness:
    """READY=1 once per generation of workers: at the start, after each reload (which sends
    RELOADING=1 first), and from a new master after an upgrade, with its own pid."""

    def __init__(self) -> None:
        self.announced = False

    def reloading(self) -> None:
        self.announced = False
        reloading()

    def serving(self, ready: int, target: int) -> None:
        """Announce once `ready` HTTP workers of the generation reach `target`."""
        if self.announced or ready < target:
            return
        self.announced = True
        notify("READY=1", f"MAINPID={os.getpid()}", f"STATUS=serving with {ready} HTTP worker(s)")
