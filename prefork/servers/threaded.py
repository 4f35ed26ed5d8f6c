"""Threaded mode (workers = 0): one process, an event loop, a bounded pool of threads.

The main thread runs the event loop and acts on signals; pool threads run the application.
A signal handler only enqueues the signal number, and the loop acts on it.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from types import FrameType

from prefork.config import Settings
from prefork.http.connection import Connection
from prefork.http.loop import EventLoop, Timeouts
from prefork.http.parser import Limits
from prefork.http.request import Request
from prefork.sockets import display_address, listen
from prefork.wsgi.environ import EnvironBuilder
from prefork.wsgi.handler import WSGIApp, WSGIHandler

log = logging.getLogger("prefork.server")

TICK = 1.0


def limits_from(settings: Settings) -> Limits:
    return Limits(settings.limit_request_line, settings.limit_request_fields,
                  settings.limit_request_field_size, settings.limit_request_body)


def timeouts_from(settings: Settings) -> Timeouts:
    return Timeouts(settings.http_header_timeout, settings.http_keepalive_timeout)


class ThreadedServer:
    def __init__(self, settings: Settings, app: WSGIApp) -> None:
        self.settings = settings
        self.loop = EventLoop(limits_from(settings), timeouts_from(settings), self._dispatch,
                              inline=False)
        environ = EnvironBuilder(settings.http_interface or "0.0.0.0", settings.http_port,
                                 settings.proxy_mode)
        environ.configure(multithread=True, multiprocess=False)
        self.handler = WSGIHandler(app, environ, self.loop.date,
                                   send_timeout=settings.http_header_timeout,
                                   access_log=settings.access_log,
                                   draining=lambda: self.loop.draining)
        self._jobs: queue.SimpleQueue[tuple[Connection, Request] | None] = queue.SimpleQueue()
        self._signals: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._stop_deadline: float | None = None

    def serve(self) -> int:
        sock = listen(self.settings.http_interface, self.settings.http_port)
        self.loop.add_listener(sock)
        self._start_threads()
        self._install_signals()
        log.info("HTTP service running on %s (threaded mode, %d threads)",
                 display_address(sock), self.settings.http_threads)
        while not self._finished():
            self.loop.run_once(TICK)
            self._handle_signals()
        return 0

    def _start_threads(self) -> None:
        for number in range(1, self.settings.http_threads + 1):
            thread = threading.Thread(target=self._work, name=f"http-{number}", daemon=True)
            thread.start()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            conn, request = job
            try:
                keep_open = self.handler.serve(conn, request)
            finally:
                request.body.close()
            self.loop.resume(conn, keep_open)

    def _dispatch(self, conn: Connection, request: Request) -> None:
        self._jobs.put((conn, request))

    # -- signals and stopping -------------------------------------------------------------

    def _install_signals(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._enqueue_signal)
        signal.set_wakeup_fd(self.loop.wake_fd, warn_on_full_buffer=False)

    def _enqueue_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.put(signum)

    def _handle_signals(self) -> None:
        while not self._signals.empty():
            signum = self._signals.get()
            if self._stop_deadline is None:
                self._begin_stop(signum)
            else:
                log.warning("%s received again: stopping now, %d request(s) abandoned",
                            signal.Signals(signum).name, self.loop.busy)
                self._stop_deadline = 0.0

    def _begin_stop(self, signum: int) -> None:
        grace = self.settings.limit_time_real or 120
        log.info("%s received: stopping gracefully (%d request(s) in flight, up to %ds)",
                 signal.Signals(signum).name, self.loop.busy, grace)
        self.loop.stop_accepting()
        self._stop_deadline = time.monotonic() + grace

    def _finished(self) -> bool:
        if self._stop_deadline is None:
            return False
        if self.loop.busy == 0:
            log.info("stopped")
            return True
        if time.monotonic() >= self._stop_deadline:
            log.warning("stop timeout: %d request(s) abandoned", self.loop.busy)
            return True
        return False
