"""Noticing a proxy that prefork does not trust: requests carrying X-Forwarded-For while
proxy_mode is off. The first one in each process logs a warning and leaves a marker in
data_dir, which `prefork check` reports (the application then sees the proxy's address as
the client's, and http where the client used https)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from prefork.datadir import write_private

log = logging.getLogger("prefork.server")

MARKER = "forwarded-headers-seen"


def recorder(data_dir: str) -> Callable[[str], None]:
    def record(peer: str) -> None:
        log.warning(
            "a request from %s carries X-Forwarded-For but proxy_mode is off: behind "
            "a reverse proxy set proxy_mode = True",
            peer,
        )
        try:
            write_private(
                os.path.join(data_dir, MARKER),
                f"{time.strftime('%Y-%m-%d %H:%M:%S')} from {peer}\n".encode(),
            )
        except OSError:
            pass  # the log line says it already

    return record


def seen(data_dir: str) -> str:
    """When and from where such a request last arrived; '' when none did."""
    try:
        with open(os.path.join(data_dir, MARKER)) as f:
            return f.read().strip()
    except OSError:
        return ""
