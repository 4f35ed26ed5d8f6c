"""The HTTP worker: one process, one thread, one request at a time.

It runs the foundation's event loop with inline dispatch: the loop multiplexes the shared
listening socket and this worker's keep-alive connections, and only a fully arrived request
reaches the application. The heartbeat comes from this loop, so a stuck request stops it.

Everything here runs in the child after fork and ends with os._exit: a worker never returns
into the master's code.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import sys
import threading
import time
import traceback
from types import FrameType
from typing import NoReturn

from prefork import db, metrics
from prefork.config import Settings
from prefork.db import roles
from prefork.db.pool import Database
from prefork.http.connection import Connection, SendBudget
from prefork.http.parser import EMPTY_BODY
from prefork.http.request import Request
from prefork.ops.sampling import Sampler
from prefork.workers import exitcodes
from prefork.workers.engine import make_handler, make_loop
from prefork.workers.handoff import MAX_UNPARSED, nudge, receive_connections, send_connection
from prefork.workers.limits import (
    RequestLimits,
)
from prefork.workers.process import prepare_process, run_to_exit
from prefork.workers.scoreboard import (
    MEMORY_LIMIT,
    READY,
    REAL_TIME_LIMIT,
    RETIRING,
    STOPPING,
    Slot,
)
from prefork.wsgi import limit_exceeded
from prefork.wsgi.handler import WSGIApp, WSGIHandler
from prefork.wsgi.limit_exceeded import LimitAlarm, LimitExceeded
from prefork.wsgi.loader import AppImportError, load_app

log = logging.getLogger("prefork.worker")

TICK = 1.0
REBALANCE_AFTER = 0.01  # a request running this long hands its worker's other clients over
DRAIN_TICK = 0.1
DRAIN_MAX = 120
JITTER_FRACTION = 0.1


class HTTPWorker:
    def __init__(
        self,
        settings: Settings,
        number: int,
        slot: Slot,
        listeners: list[socket.socket],
        app: WSGIApp | None,
        channel: socket.socket,
        database: Database | None = None,
    ) -> None:
        self.settings = settings
        self.database = database
        self.channel = channel
        # Held by the main thread except while the application runs: the rebalancer
        # thread may touch the event loop only then.
        self.lock = threading.Lock()
        self.busy_since = 0.0
        self.request_seq = 0
        self.number = number
        self.slot = slot
        self.listeners = listeners
        self.app = app
        self.master_pid = os.getppid()
        self.exit_code: int | None = None
        self.retire_code = 0  # the exit code to end with once the master says so
        self.served = 0
        limit = settings.limit_request
        self.max_requests = limit + random.randint(0, int(limit * JITTER_FRACTION))
        self.limits = RequestLimits(settings.limit_time_cpu, settings.limit_memory_soft, warn=True)
        self.alarm = LimitAlarm()
        self.loop = make_loop(
            settings, self._serve, inline=True, pace_accepting=settings.workers > 1
        )
        self.handler: WSGIHandler | None = None
        self.published_connections = -1
        self.budget = self.loop.budget or SendBudget(0, 0)
        self.published_held = 0
        counters = metrics.current()
        self.sending_gauge = counters.send_buffer if counters is not None else None
        self.sampler = Sampler(database)
        self.shed_seq = slot.shed_request()[1]

    def run(self) -> NoReturn:
        """Serve until told to stop or a limit says so; never returns."""
        run_to_exit(f"http worker #{self.number}", self.slot, self._run, self._close_database)

    def _run(self) -> int:
        self._prepare_process()
        app = self.app or self._load_app()
        if app is None:
            return exitcodes.BOOT_FAILED
        self.handler = make_handler(
            self.settings,
            app,
            self.loop,
            multiprocess=True,
            draining=lambda: self.exit_code is not None,
            drain_announced=self.slot.draining,
            database=self.database,
            alarm=self.alarm,
        )
        for sock in self.listeners:
            self.loop.add_listener(sock)
        self.channel.setblocking(False)
        self.loop.watch(self.channel, self._adopt)
        threading.Thread(target=self._rebalance, name="rebalancer", daemon=True).start()
        self.limits.arm()
        self.slot.set_state(READY)
        nudge(self.channel)  # a retiring worker may be waiting for this one
        access = self.handler.access_log
        next_check = 0.0
        with self.lock:
            while self.exit_code is None:
                now = time.monotonic()
                self.slot.beat(now)
                self.loop.run_once(TICK if access is None else access.timeout(TICK))
                if access is not None:  # its buffer leaves when idle, or once a second
                    access.after_turn()
                self._share_load()
                if now >= next_check:  # once a TICK, not once per turn of a busy loop
                    next_check = now + TICK
                    self.sampler.maybe_sample()
                    if os.getppid() != self.master_pid:
                        log.warning("http worker #%d: master gone, exiting", self.number)
                        return exitcodes.ORPHANED
            if self.alarm.fired is None:
                self._drain()
            else:
                self._leave()
        counters = metrics.current()
        if counters is not None:
            counters.flush()  # what this worker served since its last flush
        return self.exit_code

    def _close_database(self) -> None:
        """End this worker's database sessions cleanly (the server logs no lost client)."""
        if self.database is not None:
            try:
                self.database.close()
            except Exception:
                log.exception("http worker #%d: closing its database connections", self.number)

    def _prepare_process(self) -> None:
        prepare_process(
            f"http worker #{self.number}", self._on_term, self.settings.limit_memory_hard
        )
        signal.signal(signal.SIGPROF, self._on_limit)  # limit_time_cpu (RequestLimits)
        signal.signal(signal.SIGUSR1, self._on_limit)  # the master's, the limit in the slot
        signal.set_wakeup_fd(self.loop.wake_fd, warn_on_full_buffer=False)
        if self.database is not None:
            self.database.bind(roles.HTTP, self.settings.limit_time_real)
        db.install(self.database)

    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        if self.exit_code is None:  # the loop sees it after the current request
            self.exit_code = self.retire_code or exitcodes.STOPPED
            self.loop.interrupt()

    def _on_limit(self, signum: int, frame: FrameType | None) -> None:
        """A limit stops this worker after the current request, and interrupts the
        application when it runs (the alarm raises into it)."""
        exceeded, code = self._exceeded(signum)
        if exceeded is None:
            return
        if self.alarm.fired is None:
            self.exit_code = code  # the loop ends; a memory or request limit is overruled
            self.loop.interrupt()
        self.alarm.ring(exceeded)

    def _exceeded(self, signum: int) -> tuple[LimitExceeded | None, int]:
        s = self.settings
        if signum == signal.SIGPROF:
            return limit_exceeded.cpu_time(s.limit_time_cpu), exitcodes.CPU_TIME
        order = self.slot.stop_order()
        if order == REAL_TIME_LIMIT:
            return limit_exceeded.real_time(s.limit_time_real), exitcodes.REAL_TIME
        if order == MEMORY_LIMIT:
            return limit_exceeded.memory(s.limit_memory_hard), exitcodes.MEMORY_RSS
        return None, 0  # a SIGUSR1 the master did not send

    def _load_app(self) -> WSGIApp | None:
        try:
            return load_app(self.settings.app)
        except AppImportError as exc:
            message = str(exc)
        except BaseException:
            message = traceback.format_exc()
        self.slot.set_error(message)
        log.error("http worker #%d cannot load the application: %s", self.number, message)
        return None

    def _serve(self, conn: Connection, request: Request) -> bool:
        handler = self.handler
        assert handler is not None
        now = time.monotonic()
        self.slot.begin_request(now, request.line.encode("latin-1", "replace"))
        memory_errors = handler.memory_errors
        self.request_seq += 1
        self.busy_since = now
        self.lock.release()
        try:
            keep_open = handler.serve(conn, request, now)
        finally:
            self.lock.acquire()
            self.busy_since = 0.0
            if request.body is not EMPTY_BODY:
                request.body.close()
        served = self.served = self.served + 1
        if self.alarm.fired is not None:  # no end: the master's exit record names the request
            return keep_open  # false, unless the limit rang after the response: handed over
        self.slot.end_request(served, 0.0)
        memory_error = handler.memory_errors != memory_errors
        if (
            memory_error
            or served >= self.max_requests
            or time.monotonic() >= self.limits.next_reading
        ):
            self._check_limits(memory_error)
        # Even when this worker is about to exit, a connection whose response promised
        # keep-alive stays open: the drain hands it to another worker.
        return keep_open

    def _check_limits(self, memory_error: bool) -> None:
        """After a request: decide whether this worker must be recycled."""
        rss = self.limits.after_request()
        if memory_error:
            self._recycle(exitcodes.MEMORY_HARD, 0)
        elif rss:
            self._recycle(exitcodes.MEMORY_SOFT, rss)
        elif self.served >= self.max_requests:
            self._retire()

    def _recycle(self, code: int, value: int) -> None:
        """Stop after the current request (a memory limit: no more requests here)."""
        if self.exit_code is None or self.exit_code == exitcodes.STOPPED:
            self.exit_code = code
            self.slot.mark_exit(value)
            self.slot.set_state(STOPPING)  # the master stops sending connections here

    def _retire(self) -> None:
        """limit_request reached: keep serving while the master starts the replacement,
        which accepts before this worker stops (its SIGTERM then ends this one with
        REQUEST_LIMIT): a recycle leaves no moment with a worker less."""
        if self.exit_code is not None:  # already stopping: the limit is the reason
            self._recycle(exitcodes.REQUEST_LIMIT, self.served)
            return
        self.retire_code = exitcodes.REQUEST_LIMIT
        self.max_requests = sys.maxsize  # decided once; memory is still checked
        self.slot.mark_exit(self.served)
        self.slot.set_state(RETIRING)
        nudge(self.channel)

    # -- handing connections over -----------------------------------------------------------

    def _adopt(self) -> None:
        received, closed = receive_connections(self.channel)
        for handed in received:
            self.loop.adopt(handed.sock, handed.peer, handed.unparsed)
        if closed:
            self.loop.unwatch(self.channel)

    def _share_load(self) -> None:
        """Publish how many clients this worker holds; hand some over when the master,
        seeing another worker hold fewer, asks for it (a recycled worker's clients all go
        to the workers left running, and keep-alive would keep them there)."""
        count = self.loop.open_connections
        if count != self.published_connections:
            self.slot.set_connections(count)
            self.published_connections = count
        budget = self.budget
        if budget.held != self.published_held:
            self.published_held = budget.held
            self.slot.set_sending(budget.held, budget.readers)
            if self.sending_gauge is not None:
                self.sending_gauge.set(budget.held)
        shed, seq = self.slot.shed_request()
        if seq != self.shed_seq:
            self.shed_seq = seq
            self._hand_over(shed)

    def _hand_over(self, most: int | None = None) -> int:
        """Give the master the connections another worker can serve (all by default),
        with what they sent of a next request; the caller holds the lock."""
        handed = 0
        for conn, unparsed in self.loop.movable_connections(MAX_UNPARSED)[:most]:
            if not send_connection(self.channel, conn.sock, conn.peer, unparsed):
                break  # the master is stopping: this worker serves what stays
            self.loop.forget(conn)
            conn.close()  # the master holds the socket now
            handed += 1
        if handed:
            self.published_connections = self.loop.open_connections
            self.slot.set_connections(self.published_connections)
        return handed

    def _return_unadopted(self) -> None:
        """Send back the connections the master passed while the running request began:
        they would wait for it in the channel. The caller holds the lock."""
        received, _ = receive_connections(self.channel)
        for handed in received:
            send_connection(self.channel, handed.sock, handed.peer, handed.unparsed)
            handed.sock.close()

    def _rebalance(self) -> None:
        """While a request runs long, let idle workers serve this worker's other clients.
        A request seen running at two looks REBALANCE_AFTER apart has run at least that
        long (and at most twice that): one wake-up per period, whatever the load."""
        seen_seq = handled_seq = 0
        while True:
            time.sleep(REBALANCE_AFTER)
            seq = self.request_seq if self.busy_since else 0
            if not seq or seq != seen_seq or seq == handled_seq:
                seen_seq = seq
                continue
            self._flush_access_log()
            if self.lock.acquire(blocking=False):  # free only while the application runs
                try:
                    if self.busy_since and self.request_seq == seq:
                        self._return_unadopted()
                        self._hand_over()
                finally:
                    self.lock.release()
            handled_seq = seq

    def _flush_access_log(self) -> None:
        """From the rebalancer, when a request runs long: the lines of those before it are
        written now, not lost if a limit's SIGKILL ends this one (the log is thread-safe)."""
        access = self.handler.access_log if self.handler is not None else None
        if access is not None:
            access.flush()

    def _drain(self) -> None:
        """Stop accepting (the listening socket stays open in the master and the other
        workers), hand idle connections to the master for other workers, and answer what
        clients still send on the rest, with `Connection: close`."""
        self.slot.set_state(STOPPING)
        self._hand_over()
        self.loop.stop_accepting(close_idle=False)
        deadline = time.monotonic() + (self.settings.limit_time_real or DRAIN_MAX)
        access = self.handler.access_log if self.handler is not None else None
        while self.loop.open_connections and time.monotonic() < deadline:
            self.slot.beat(time.monotonic())
            self.loop.run_once(DRAIN_TICK)
            if access is not None:
                access.after_turn()
        self._return_late_arrivals()

    def _leave(self) -> None:
        """Stop at a limit: hand the idle clients over and close the others (no request
        of theirs has started), without the drain: the backstop (the master's SIGKILL,
        RLIMIT_CPU) comes a few seconds later and would stop another request here."""
        self.slot.set_state(STOPPING)
        self._hand_over()
        self._return_late_arrivals()

    def _return_late_arrivals(self) -> None:
        """Close the channel for incoming connections and give back any the master sent
        after this worker stopped: a descriptor left in the queue would die with it, and
        its client would get a reset."""
        try:
            self.channel.shutdown(socket.SHUT_RD)  # the master's next send fails at once
        except OSError:
            return
        self._return_unadopted()
