"""The process tree of the forking benchmark servers: N children serving one listening
socket, all stopped at once when the parent gets SIGTERM."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import NoReturn


def run_forked(count: int, serve: Callable[[], None]) -> NoReturn:
    """Fork `count` children running `serve()`; the parent waits for SIGTERM."""
    children = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            serve()
            os._exit(0)
        children.append(pid)

    def stop(signum: int, frame: object) -> None:
        for child in children:
            os.kill(child, signal.SIGKILL)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    while True:
        signal.pause()
