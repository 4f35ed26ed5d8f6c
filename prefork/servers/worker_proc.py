"""A worker process as the master sees it: how it is forked, signalled and recorded."""

from __future__ import annotations

import gc
import os
import signal
import socket
import time
from dataclasses import dataclass, field

import psutil

from prefork.servers.exits import KillOrder
from prefork.servers.kinds import ProcessKind, WorkerLimits
from prefork.workers.scoreboard import Slot

# The signals the master handles; a newborn worker inherits them blocked (fork_worker).
SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGTTIN", "SIGTTOU", "SIGQUIT", "SIGUSR2", "SIGCHLD")
_MASTER_SIGNALS = {getattr(signal, name) for name in SIGNALS}


@dataclass
class WorkerProc:
    pid: int
    number: int
    slot: Slot
    generation: int
    channel: socket.socket
    kind: ProcessKind
    limits: WorkerLimits  # fixed at fork: its exit is judged by them
    started: float = field(default_factory=time.monotonic)
    started_at: float = field(default_factory=time.time)
    terminating: bool = False
    order: KillOrder | None = None
    kill_at: float = 0.0  # the monotonic time a worker told to stop (order set) is killed
    process: psutil.Process | None = None

    @property
    def role(self) -> str:
        return self.kind.role(self.number)

    def send(self, signum: int) -> None:
        send_signal(self.pid, signum)

    def watch(self) -> None:
        """Its psutil handle, for the watchdog's and the state file's RSS and CPU."""
        try:
            self.process = psutil.Process(self.pid)
        except psutil.Error:
            self.process = None


def send_signal(pid: int, signum: int) -> None:
    """The signal to the process, unless it has already exited."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def fork_worker() -> int:
    """os.fork() for a worker, which inherits two things.

    The master's signals blocked, until prepare_process has installed the worker's own
    handlers and unblocks them: a SIGTERM sent to a newborn worker waits for its handler,
    instead of reaching the master's handler copied into the child and being lost there.

    Every object frozen: the worker's collections never visit them, so they do not copy
    the pages it shares with the master (a preloaded application's whole heap).

    The master restores both at once; its objects go back to the oldest generation, so its
    garbage stays collectable.
    """
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, _MASTER_SIGNALS)
    gc.freeze()
    pid = -1
    try:
        pid = os.fork()
    finally:
        if pid != 0:  # the master (also when the fork failed)
            gc.unfreeze()
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    return pid
