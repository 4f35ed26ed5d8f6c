"""Upgrading the running server in place (USR2), on both sides.

The old master starts a new one: the same command, executed again with the listening
sockets, which the environment names (prefork.sockets.handover_env, and REALTIME_FD_ENV for
the realtime one); the new master's servers/listening.py takes them. It serves on them
and, once its workers are ready, asks the old one to stop. If the new master exits first,
the old one serves on.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Sequence

from prefork.servers.listening import REALTIME_FD_ENV, Listeners
from prefork.servers.worker_proc import send_signal
from prefork.sockets import handover_env

log = logging.getLogger("prefork.master")

UPGRADE_ENV = "PREFORK_UPGRADE_FROM"  # the old master's pid, in the new master


class Upgrade:
    def __init__(self) -> None:
        self.new_master: int | None = None  # the master this one started (USR2)
        self.old_master = int(os.environ.pop(UPGRADE_ENV, "0") or 0)  # the one that started it

    @property
    def handed_over(self) -> bool:
        """True when a new master took over: what this one owns stays running."""
        return self.new_master is not None

    def start(self, argv: Sequence[str], listeners: Listeners) -> None:
        env = {**os.environ, **handover_env(listeners.all()), UPGRADE_ENV: str(os.getpid())}
        if listeners.realtime is not None:
            env[REALTIME_FD_ENV] = str(listeners.realtime.fileno())
        command = [sys.executable, "-m", "prefork", *argv]
        pid = os.fork()
        if pid == 0:
            try:
                os.execve(sys.executable, command, env)
            finally:
                os._exit(127)
        self.new_master = pid
        log.info("upgrade: started a new master (pid %d) with the listening sockets", pid)

    def failed(self, status: int, stopping: bool) -> None:
        """The new master exited: this one keeps the service."""
        self.new_master = None
        if not stopping:
            log.error(
                "upgrade failed: the new master exited (status %d); still serving",
                os.waitstatus_to_exitcode(status),
            )

    def finish(self) -> None:
        """In the new master, its workers ready: the old master stops."""
        if not self.old_master:
            return
        log.info("upgrade: workers ready, asking the old master (pid %d) to stop", self.old_master)
        send_signal(self.old_master, signal.SIGTERM)
        self.old_master = 0
