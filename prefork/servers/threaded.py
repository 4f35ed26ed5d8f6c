"""Threaded mode (workers = 0): one process, an event loop, a bounded pool of threads.

The main thread runs the event loop and acts on signals; pool threads run the application.
A signal handler only enqueues the signal number, and the loop acts on it.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import NoReturn

from prefork import access_log, db
from prefork.config import Settings
from prefork.cron.threads import CronThreads
from prefork.db import roles
from prefork.db.pool import Database
from prefork.dev.reload import CodeReload, dev_warning
from prefork.http.connection import Connection
from prefork.http.request import Request
from prefork.ops import sdnotify
from prefork.ops.sampling import Sampler
from prefork.realtime.app import is_realtime_path
from prefork.servers.exits import mib
from prefork.servers.realtime_thread import RealtimeThread
from prefork.sockets import (
    ListenError,
    display_address,
    handover_env,
    http_listeners,
)
from prefork.unix_socket import SocketFiles
from prefork.workers.engine import make_handler, make_loop
from prefork.workers.limits import over_soft_limit
from prefork.wsgi.handler import WSGIApp

log = logging.getLogger("prefork.server")

TICK = 1.0
DEV_TICK = 0.1  # the loop's longest wait with dev reload: how soon a change is seen
# Reloads asked for (HUP, a code change), logged at INFO; a limit's at WARNING.
PLANNED = ("SIGHUP", "dev reload")
RELOAD_GRACE = 5.0  # seconds other requests get to finish before a limit reload


class ThreadedServer:
    def __init__(
        self,
        settings: Settings,
        app: WSGIApp,
        argv: Sequence[str] = (),
        database: Database | None = None,
        pg_conninfo: str = "",
    ) -> None:
        """`pg_conninfo`: the PostgreSQL database, for the cron threads and the realtime
        bus; empty with SQLite (neither runs)."""
        self.settings = settings
        self.database = database
        self.cron = (
            CronThreads(settings, pg_conninfo, self._cron_timed_out) if pg_conninfo else None
        )
        self._drain_until: float | None = None  # monotonic: an announced stop begins
        self.realtime = (
            RealtimeThread(settings, pg_conninfo, self._draining) if pg_conninfo else None
        )
        self.argv = list(argv)
        self.listeners: list[socket.socket] = []
        self.socket_files = SocketFiles()
        self._inflight: dict[int, tuple[float, str]] = {}  # thread id -> (start, request)
        self._reload_reason = ""
        self._reload_deadline = 0.0
        self.loop = make_loop(settings, self._dispatch, inline=False)
        self.handler = make_handler(
            settings,
            app,
            self.loop,
            multiprocess=False,
            draining=lambda: self.loop.draining,
            drain_announced=self._draining,
            database=database,
        )
        self._jobs: queue.SimpleQueue[tuple[Connection, Request] | None] = queue.SimpleQueue()
        self._signals: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._stop_deadline: float | None = None
        self.code_reload: CodeReload | None = None

    def serve(self) -> int:
        s = self.settings
        self.listeners = http_listeners(s, self.socket_files)  # a re-exec never removes
        for sock in self.listeners:
            self.loop.add_listener(sock)
        try:
            return self._serve()
        finally:
            self.socket_files.remove()

    def _serve(self) -> int:
        s = self.settings
        if self.database is not None:
            self.database.bind(roles.THREADED, s.limit_time_real, users=s.http_threads)
        db.install(self.database)
        self._start_threads()
        if self.cron is not None:
            self.cron.start()
        if self.realtime is not None:
            self.realtime.start()
        self._install_signals()
        sdnotify.notify("READY=1", f"MAINPID={os.getpid()}", "STATUS=serving (threaded mode)")
        if s.dev_reload:  # watching before the line that says the server is up
            self.code_reload = CodeReload.open(s)
        log.info(
            "HTTP service running on %s (threaded mode, %d threads)",
            display_address(self.listeners[0]),
            s.http_threads,
        )
        if self.code_reload is not None:
            log.warning("%s", dev_warning(s, self.code_reload))
        sampler = Sampler(self.database)
        access = self.handler.access_log
        while not self._finished():
            tick = self._tick()
            self.loop.run_once(tick if access is None else access.timeout(tick))
            if access is not None:  # its buffer leaves when idle, or once a second
                access.after_turn()
            sampler.maybe_sample()
            self._handle_signals()
            self._end_drain()
            self._check_limits()
            self._reload_code()
            if self._reload_reason and not self._reload_deadline and self._serving():
                self._begin_reload()
            if self._reload_deadline and self._serving() and self._reload_ready():
                self._reexec()
        access_log.shutdown()
        return 0

    def _start_threads(self) -> None:
        for number in range(1, self.settings.http_threads + 1):
            thread = threading.Thread(target=self._work, name=f"http-{number}", daemon=True)
            thread.start()

    def _work(self) -> None:
        ident = threading.get_ident()
        while (job := self._jobs.get()) is not None:
            conn, request = job
            self._inflight[ident] = (
                time.monotonic(),
                f"{request.method} {request.target} {request.version}",
            )
            try:
                keep_open = self.handler.serve(conn, request)
            finally:
                del self._inflight[ident]
                request.body.close()
            self.loop.resume(conn, keep_open)
            if not self._reload_reason and (
                rss := over_soft_limit(self.settings.limit_memory_soft)
            ):
                self._reload_reason = (
                    f"memory-soft: RSS {mib(rss)} > limit {mib(self.settings.limit_memory_soft)}"
                )
                self.loop.wake()

    # -- limits: Odoo's threaded behaviour, a whole-process reload ------------------------

    def _overdue(self) -> list[tuple[float, str]]:
        """(seconds running, request line) of requests past limit_time_real."""
        limit = self.settings.limit_time_real
        now = time.monotonic()
        running = [(now - started, line) for started, line in list(self._inflight.values())]
        return [item for item in running if limit and item[0] > limit]

    def _check_limits(self) -> None:
        if self._reload_reason or not self._serving():
            return
        for elapsed, line in self._overdue()[:1]:
            self._reload_reason = (
                f"real-time: request '{line}' running {elapsed:.1f}s > "
                f"limit {self.settings.limit_time_real}s"
            )

    def _reload_code(self) -> None:
        """A code change that compiles: the process is replaced as for HUP."""
        if self.code_reload is None:
            return
        changed = self.code_reload.due(time.monotonic())
        if changed and self._serving() and not self._reload_reason:
            self._reload_reason = f"dev reload: {self.code_reload.named(changed)} changed"

    def _begin_reload(self) -> None:
        if self._reload_reason.startswith(PLANNED):
            log.info("%s: reloading the whole process", self._reload_reason)
        else:
            log.warning(
                "threaded mode limit reached (%s): reloading the whole process", self._reload_reason
            )
        self.loop.stop_accepting(keep_listeners=True)
        self._reload_deadline = time.monotonic() + RELOAD_GRACE

    def _reload_ready(self) -> bool:
        """Every request but the stuck ones has finished, or the grace period is over."""
        stuck = len(self._overdue())
        return self.loop.busy <= stuck or time.monotonic() >= self._reload_deadline

    def _reexec(self) -> None:
        level = logging.INFO if self._reload_reason.startswith(PLANNED) else logging.WARNING
        log.log(level, "re-executing: %s", " ".join(["prefork", *self.argv]))
        reexec(self.argv, self.listeners)

    def _cron_timed_out(self, name: str) -> None:
        """On a cron thread's timer: the timeout is recorded; reload to stop the job."""
        if not self._reload_reason:
            self._reload_reason = f"cron-timeout: job {name!r} ran past limit_time_real_cron"
            self.loop.wake()

    def _dispatch(self, conn: Connection, request: Request) -> None:
        if self.realtime is not None and is_realtime_path(request.path):
            self.realtime.hand_over(conn.sock, request)
            self.loop.resume(conn, False)  # closes this loop's copy of the socket
            return
        self._jobs.put((conn, request))

    # -- signals and stopping -------------------------------------------------------------

    def _install_signals(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._enqueue_signal)
        signal.set_wakeup_fd(self.loop.wake_fd, warn_on_full_buffer=False)

    def _enqueue_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.put(signum)

    def _handle_signals(self) -> None:
        """The first TERM or INT drains (drain_delay) or stops gracefully; one during the
        drain stops gracefully; one during the graceful stop abandons what is running."""
        while not self._signals.empty():
            signum = self._signals.get()
            if signum == signal.SIGHUP:
                self._hangup()
            elif self._stop_deadline is not None:
                log.warning(
                    "%s received again: stopping now, %d request(s) abandoned",
                    signal.Signals(signum).name,
                    self.loop.busy,
                )
                self._stop_deadline = 0.0
            elif self._drain_until is not None:
                log.info("%s received again: ending the drain now", signal.Signals(signum).name)
                self._begin_stop(signum)
            elif self.settings.drain_delay:
                self._begin_drain(signum)
            else:
                self._begin_stop(signum)

    def _hangup(self) -> None:
        """HUP: Odoo's threaded server restarts itself; here the process is replaced as for
        a limit (the same sockets, the configuration read again) once requests finish."""
        if self._serving() and not self._reload_reason:
            self._reload_reason = "SIGHUP: the configuration is read again"

    def _draining(self) -> bool:
        """A stop is announced: the health routes answer 503 'draining' from now on."""
        return self._drain_until is not None

    def _serving(self) -> bool:
        """Neither draining nor stopping: a limit reload may replace the process."""
        return self._drain_until is None and self._stop_deadline is None

    def _tick(self) -> float:
        tick = TICK if self.code_reload is None else DEV_TICK
        if self._drain_until is None or self._stop_deadline is not None:
            return tick
        return max(0.0, min(tick, self._drain_until - time.monotonic()))

    def _begin_drain(self, signum: int) -> None:
        delay = self.settings.drain_delay
        self._drain_until = time.monotonic() + delay
        sdnotify.notify("STOPPING=1", f"STATUS=draining for {delay:g} s before stopping")
        log.info(
            "%s received: draining for %g s: /web/health answers 503 'draining', "
            "requests are still served; then a graceful stop (%s again to stop now)",
            signal.Signals(signum).name,
            delay,
            signal.Signals(signum).name,
        )

    def _end_drain(self) -> None:
        if (
            self._drain_until is not None
            and self._stop_deadline is None
            and time.monotonic() >= self._drain_until
        ):
            log.info("drain over")
            self._begin_stop(signal.SIGTERM)

    def _begin_stop(self, signum: int) -> None:
        sdnotify.notify("STOPPING=1")
        grace = self.settings.limit_time_real or 120
        log.info(
            "%s received: stopping gracefully (%d request(s) in flight, up to %ds)",
            signal.Signals(signum).name,
            self.loop.busy,
            grace,
        )
        self.loop.stop_accepting()
        if self.cron is not None:
            self.cron.stop()  # a job in progress may finish within the same grace
        if self.realtime is not None:
            self.realtime.stop()  # websockets closed with 1001
        self._stop_deadline = time.monotonic() + grace

    def _finished(self) -> bool:
        if self._stop_deadline is None:
            return False
        if self.loop.busy == 0 and not (self.cron is not None and self.cron.running):
            log.info("stopped")
            return True
        if time.monotonic() >= self._stop_deadline:
            log.warning("stop timeout: %d request(s) abandoned", self.loop.busy)
            return True
        return False


def reexec(argv: Sequence[str], listeners: list[socket.socket]) -> NoReturn:
    """Replace this process (threads included) with a fresh server on the same sockets."""
    env = {**os.environ, **handover_env(listeners)}
    access_log.shutdown()
    logging.shutdown()
    os.execve(sys.executable, [sys.executable, "-m", "prefork", *argv], env)


def wait_for_fix(settings: Settings, argv: Sequence[str]) -> int:
    """Threaded mode with dev reload, when the application raised at import: hold the
    sockets (clients wait in the listen queue) until a change compiles, then start again;
    1 when stopped (TERM, Ctrl-C) before."""
    files = SocketFiles()
    try:
        listeners = http_listeners(settings, files)
    except ListenError as exc:
        log.error("%s", exc)
        return 1
    watching = CodeReload.open(settings)
    log.error(
        "dev reload: the application could not be imported (traceback above); waiting "
        "for a change under %s",
        watching.root,
    )
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while not (changed := watching.due(time.monotonic())):
            time.sleep(DEV_TICK)
    except KeyboardInterrupt:
        files.remove()
        return 1
    log.info("dev reload: %s changed: starting again", watching.named(changed))
    reexec(argv, listeners)
