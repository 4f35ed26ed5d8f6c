"""What every worker process does the same way after the fork: its signals, title and
limits, and a run that always ends in os._exit with the worker's code (never returning into
the master's code, a crash recorded in its scoreboard slot)."""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable
from types import FrameType
from typing import NoReturn

from setproctitle import setproctitle

from prefork import access_log
from prefork.workers import exitcodes
from prefork.workers.limits import disable_core_dumps, set_address_space_backstop
from prefork.workers.scoreboard import Slot

log = logging.getLogger("prefork.worker")

_IGNORED = (
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGUSR2,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGWINCH,
)  # the master's signals, sent to the whole group by a terminal

TermHandler = Callable[[int, FrameType | None], None]


def prepare_process(title: str, on_term: TermHandler, limit_memory_hard: int) -> None:
    # QUIT dumps every thread's stack from C, without running Python in a handler.
    faulthandler.register(signal.SIGQUIT, file=sys.stderr, all_threads=True, chain=False)
    signal.signal(signal.SIGTERM, on_term)
    for signum in _IGNORED:
        signal.signal(signum, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    setproctitle(f"prefork: {title}")
    disable_core_dumps()
    set_address_space_backstop(limit_memory_hard)
    # The master forked this process with its signals blocked (see fork_worker): any that
    # arrived since reach the handlers above now.
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def run_to_exit(
    role: str, slot: Slot, body: Callable[[], int], cleanup: Callable[[], None] = lambda: None
) -> NoReturn:
    code = exitcodes.CRASHED
    try:
        code = body()
    except BaseException:
        text = traceback.format_exc()
        slot.set_error(text)
        log.critical("%s crashed:\n%s", role, text)
    finally:
        cleanup()
        access_log.shutdown()  # what a worker logged is written on every way out
        logging.shutdown()
        os._exit(code)
