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
