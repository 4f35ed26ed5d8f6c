"""The event loop: accepts, reads, and hands complete requests to a dispatcher.

It multiplexes the listening sockets and every connection that is idle or still sending its
request, so a slow or idle client costs a file descriptor, never a thread or a worker. Only a
request that has fully arrived is dispatched.

Two ways to dispatch, one loop:
- inline (a single-threaded prefork worker): the dispatcher serves the request on this thread
  and the connection stays registered;
- handed off (threaded mode): the connection leaves the selector while a pool thread serves
  it, and comes back through `resume`, which any thread may call.
"""

from __future__ import annotations

import collections
import logging
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from prefork.http.connection import Connection, SendBudget
from prefork.http.errors import HTTPError
from prefork.http.pacing import AcceptPacer
from prefork.http.parser import Limits
from prefork.http.poller import Poller
from prefork.http.request import Request
from prefork.http.responses import CONTINUE, DateCache, error_response
from prefork.quiet_log import QuietLog
from prefork.sockets import no_delay
from prefork.wakeup import WakeupPipe

log = logging.getLogger("prefork.http")

ACCEPT_BATCH = 64
SWEEP_INTERVAL = 0.5
DRAIN_IDLE = 5.0  # most seconds an idle connection is kept while the server stops
DEFER_ACCEPT = 1  # seconds the kernel holds a connection that sent nothing (TCP_DEFER_ACCEPT)
# Linux accepted sockets inherit the listener's TCP_NODELAY (see prefork.sockets.no_delay).
_NODELAY_PER_CONNECTION = not sys.platform.startswith("linux")

# Called with a connection and its next complete request. Inline dispatchers return whether
# the connection stays open; hand-off dispatchers return None and call `resume` later.
Dispatch = Callable[[Connection, Request], "bool | None"]


@dataclass(frozen=True)
class Timeouts:
    request: float
    keepalive: float
    send: float  # without progress, while the loop sends the rest of a response


class EventLoop:
    def __init__(
        self,
        limits: Limits,
        timeouts: Timeouts,
        dispatch: Dispatch,
        *,
        inline: bool,
        pace_accepting: bool = False,
        budget: SendBudget | None = None,
        refused: Callable[[int], None] | None = None,
    ) -> None:
        self.limits = limits
        self._accept_failed = QuietLog(log, 10.0)  # EMFILE: once per accept attempt
        self._refused = refused  # told the status of each request the loop answers itself
        # Inline only: what the loop may keep of responses for clients that read slowly.
        self.budget = budget if inline else None
        self.timeouts = timeouts
        self.date = DateCache()
        self._dispatch = dispatch
        self._serve_inline = inline  # not `_inline`: mypyc would name its C field `__inline`
        # Pacing is only worth it when other workers share the listening sockets.
        self._pacer = AcceptPacer() if inline and pace_accepting else None
        self._poller = Poller()
        self._listeners: list[socket.socket] = []
        self._conns: set[Connection] = set()
        self._busy = 0
        self._resumed: collections.deque[tuple[Connection, bool]] = collections.deque()
        self._wakeup = WakeupPipe()
        self._wake_pending = False
        self._poller.register(self._wakeup.read_fd, None)
        self._next_sweep = 0.0
        self.draining = False
        self.dispatched = 0
        self.serving: Connection | None = None
        self._accept_paused = False
        self._interrupted = False

    @property
    def wake_fd(self) -> int:
        """Write end of the wake-up pipe, for `signal.set_wakeup_fd`."""
        return self._wakeup.write_fd

    # -- listening ------------------------------------------------------------------------

    def add_listener(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        no_delay(sock)  # also for sockets inherited from systemd or a previous master
        if sock.family != socket.AF_UNIX and hasattr(socket, "TCP_DEFER_ACCEPT"):
            # Linux completes accept() once the client's first bytes arrived (or after about
            # a second without any): the read that follows accept() finds the request, and
            # a connection that sends nothing wakes no worker.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, DEFER_ACCEPT)
        self._listeners.append(sock)
        self._watch_listener(sock)

    def _watch_listener(self, sock: socket.socket) -> None:
        # Exclusive when workers share it: a connection wakes one waiting worker, not all.
        self._poller.register(sock.fileno(), sock, exclusive=self._pacer is not None)

    def stop_accepting(self, *, close_idle: bool = True, keep_listeners: bool = False) -> None:
        """Stop taking connections.

        With `close_idle`, connections with no request in progress are dropped at once.
        With `keep_listeners`, the listening sockets stay open (the caller hands them on).
        Without it they stay open while they are used, up to the keep-alive timeout (at most
        DRAIN_IDLE) between requests: a client busy on its connection gets its next answer,
        with `Connection: close`, instead of a reset.
        """
        self.draining = True
        for sock in self._listeners:
            if not self._accept_paused:
                self._poller.unregister(sock.fileno())
            if not keep_listeners:  # kept open to hand over to a re-executed server
                sock.close()
        self._listeners.clear()
        for conn in list(self._conns):
            if close_idle:
                self._close(conn)
            elif not conn.in_request:
                conn.deadline = min(conn.deadline, time.monotonic() + self._drain_idle())

    def _drain_idle(self) -> float:
        return min(self.timeouts.keepalive, DRAIN_IDLE)

    def watch(self, fileobj: socket.socket, callback: Callable[[], None]) -> None:
        """Call `callback` on this loop's thread whenever `fileobj` is readable."""
        self._poller.register(fileobj.fileno(), _Watch(callback))

    def unwatch(self, fileobj: socket.socket) -> None:
        self._poller.unregister(fileobj.fileno())

    def adopt(self, sock: socket.socket, peer: tuple[str, int], unparsed: bytes = b"") -> None:
        """Take over a connection another process accepted, with the bytes it had read
        and not parsed."""
        sock.setblocking(False)
        conn = Connection(sock, peer, self.limits, self.budget)
        if unparsed:
            conn.parser.feed(unparsed)
        self._register(conn)
        self._on_readable(conn)

    def movable_connections(self, most_unparsed: int) -> list[tuple[Connection, bytes]]:
        """The connections another worker could take over now, with their unparsed bytes:
        all but the one being served and those holding part of a request body (or more
        than `most_unparsed` bytes of a head).

        Inline only, and only from the loop's thread or while that thread runs the
        application (the caller holds the lock that thread releases for it).
        """
        movable = []
        for conn in self._conns:
            if conn is self.serving or conn.sending is not None:
                continue  # its next requests must follow the response in progress
            unparsed = conn.parser.unparsed()
            if unparsed is not None and len(unparsed) <= most_unparsed:
                movable.append((conn, unparsed))
        return movable

    def forget(self, conn: Connection) -> None:
        """Stop watching a connection another process now owns; the socket stays open."""
        self._unregister(conn)

    @property
    def open_connections(self) -> int:
        """Connections waiting in the loop (not counting those being served)."""
        return len(self._conns)

    @property
    def busy(self) -> int:
        """Connections currently being served by a dispatcher thread."""
        return self._busy

    # -- running --------------------------------------------------------------------------

    def interrupt(self) -> None:
        """End the current turn before the next ready connection (a signal handler may call
        it: the worker is stopping, and what is still ready goes to other workers)."""
        self._interrupted = True

    def run_once(self, timeout: float) -> None:
        ready_listeners = []
        served_before = self.dispatched
        if self._pacer is not None:
            timeout = self._pace_accepting(timeout)
        self._interrupted = False
        for data in self._poller.select(timeout):
            if self._interrupted:
                return
            if data is None:
                self._drain_wakeups()
            elif isinstance(data, Connection):
                # An event from this batch may name a connection handed over or closed
                # while an earlier one was served: it is no longer ours.
                if data in self._conns:
                    if data.sending is None:
                        self._on_readable(data)
                    else:
                        self._on_writable(data)
            elif isinstance(data, _Watch):
                data.callback()
            else:
                ready_listeners.append(data)
        quota = self._accept_quota(self.dispatched != served_before) if ready_listeners else 0
        if quota:
            for listener in ready_listeners:
                if listener in self._listeners:
                    self._accept(listener, quota)
        elif not ready_listeners and self._pacer is not None:
            self._pacer.nothing_pending()
        now = time.monotonic()
        if now >= self._next_sweep:
            self._sweep(now)
            self._next_sweep = now + SWEEP_INTERVAL

    def _accept_quota(self, just_served: bool) -> int:
        # Without a pacer there is no other worker to leave connections to.
        return ACCEPT_BATCH if self._pacer is None else self._pacer.accept_quota(just_served)

    def _pace_accepting(self, timeout: float) -> float:
        """Take the listening sockets out of the selector while the pacer says so;
        returns the select timeout to use."""
        assert self._pacer is not None
        paused_for = 0.0 if self.draining else self._pacer.paused_for(time.monotonic())
        paused = paused_for > 0
        if paused != self._accept_paused:
            self._accept_paused = paused
            for sock in self._listeners:
                if paused:
                    self._poller.unregister(sock.fileno())
                else:
                    self._watch_listener(sock)
        return min(timeout, paused_for) if paused else timeout

    def resume(self, conn: Connection, keep_open: bool) -> None:
        """Give a served connection back to the loop; safe from any thread."""
        self._resumed.append((conn, keep_open))
        if not self._wake_pending:
            self._wake_pending = True
            self.wake()

    def wake(self) -> None:
        self._wakeup.wake()

    def _drain_wakeups(self) -> None:
        self._wakeup.drain()
        # Cleared after the pipe is empty and before the queue is: a resume that saw the
        # flag set is in the queue already; one that sees it clear writes a new byte.
        self._wake_pending = False
        while self._resumed:
            conn, keep_open = self._resumed.popleft()
            self._busy -= 1
            if keep_open and not self.draining:
                self._register(conn)
                self._advance(conn)
            else:
                conn.close()

    def _accept(self, listener: socket.socket, quota: int) -> None:
        # `quota` comes from the pacer when workers share the socket (see pacing.py): an
        # accepted connection waits behind this worker's other clients, so take few unless
        # every worker is busy.
        family = int(listener.family)  # an int: socket.accept() converts it for each call
        for _ in range(quota):
            try:
                fd, peer = listener._accept()  # type: ignore[attr-defined]
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: log, keep serving the others
                self._accept_failed.warning("accept failed: %s", exc)
                return
            sock = socket.socket(family, socket.SOCK_STREAM, 0, fd)
            sock.setblocking(False)
            if _NODELAY_PER_CONNECTION and family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(
                sock, peer[:2] if isinstance(peer, tuple) else ("", 0), self.limits, self.budget
            )
            self._register(conn)
            if self._serve_inline:  # the request has usually arrived (TCP_DEFER_ACCEPT): serve it
                self._on_readable(conn)
                if self._pacer is not None and conn in self._conns and conn.parser.idle:
                    self._pacer.accepted_silent(conn, time.monotonic())

    def _register(self, conn: Connection) -> None:
        conn.in_request = False
        conn.deadline = time.monotonic() + self.timeouts.keepalive
        self._conns.add(conn)
        self._poller.register(conn.fd, conn)

    def _unregister(self, conn: Connection) -> None:
        if self._pacer is not None:
            self._pacer.heard_from(conn)
        if conn in self._conns:
            self._conns.remove(conn)
            self._poller.unregister(conn.fd)

    def _close(self, conn: Connection) -> None:
        self._unregister(conn)
        sending = conn.sending
        if sending is not None:  # the client leaves before the end of its response
            conn.sending = None
            sending.abandon()
        conn.close()

    def _on_readable(self, conn: Connection) -> None:
        if self._pacer is not None and self._pacer.fresh:
            self._pacer.heard_from(conn)
        if not conn.receive():
            self._close(conn)  # closed by the client, possibly mid-request: nothing to answer
            return
        self._advance(conn)

    def _advance(self, conn: Connection) -> None:
        """Dispatch every complete request the connection has buffered."""
        while True:
            try:
                request = conn.parser.next_request()
            except HTTPError as exc:
                self._refuse(conn, exc)
                return
            if request is None:
                self._await_more(conn)
                return
            self.dispatched += 1
            if not self._serve_inline:
                self._unregister(conn)
                self._busy += 1
                self._dispatch(conn, request)
                return
            self.serving = conn
            try:
                keep_open = self._dispatch(conn, request)
            finally:
                self.serving = None
            if conn.sending is not None:  # a slow reader: the loop sends the rest
                self._await_reader(conn)
                return
            if not keep_open or self.draining:
                self._close(conn)
                return
            if conn.parser.idle:  # nearly always: no byte of a next request has arrived
                conn.in_request = False
                conn.deadline = time.monotonic() + self.timeouts.keepalive
                return

    def _await_reader(self, conn: Connection) -> None:
        """Watch for room in the socket of a response's client instead of its requests:
        the next ones wait, unread, until it has the whole response."""
        conn.in_request = True  # not idle: neither handed over nor closed as one
        conn.deadline = time.monotonic() + self.timeouts.send
        conn.queued = conn.in_kernel()
        self._poller.modify(conn.fd, writable=True)

    def _on_writable(self, conn: Connection) -> None:
        """The client of a response in progress has read some of it (or left)."""
        sending = conn.sending
        assert sending is not None
        outcome = sending.resume()
        if outcome is None:
            conn.deadline = time.monotonic() + self.timeouts.send  # the client reads
            conn.queued = conn.in_kernel()
            return
        conn.sending = None
        if not outcome or self.draining:
            self._close(conn)
            return
        self._poller.modify(conn.fd, writable=False)
        conn.in_request = False
        conn.deadline = time.monotonic() + self.timeouts.keepalive
        self._advance(conn)  # requests it pipelined meanwhile

    def _await_more(self, conn: Connection) -> None:
        if conn.parser.idle:  # nearly always: nothing of a next request has arrived
            conn.in_request = False
            idle = self._drain_idle() if self.draining else self.timeouts.keepalive
            conn.deadline = time.monotonic() + idle
            return
        if conn.parser.take_continue():
            conn.sock.send(CONTINUE)  # 25 bytes into an idle socket buffer: never blocks
        if not conn.in_request:
            conn.in_request = True
            conn.deadline = time.monotonic() + self.timeouts.request

    def _refuse(self, conn: Connection, exc: HTTPError) -> None:
        log.info("%s - refused: %s %s", conn.peer[0], exc.status, exc.reason)
        if self._refused is not None:
            self._refused(exc.status)
        try:
            conn.sock.send(error_response(exc.status, exc.reason, self.date.line()))
            conn.sock.shutdown(socket.SHUT_WR)
            conn.discard_unread()
        except OSError:
            pass
        self._close(conn)

    def _sweep(self, now: float) -> None:
        for conn in [c for c in self._conns if c.deadline <= now]:
            if conn.sending is not None:
                self._check_reader(conn, now)
            elif conn.in_request:
                self._refuse(conn, HTTPError(408, "request not received in time"))
            else:
                self._close(conn)

    def _check_reader(self, conn: Connection, now: float) -> None:
        """A response's client has not made room for more of it within the send timeout:
        dropped, unless the kernel's queue for it shrank (a slow reader, but a reader:
        the socket may need a third of its buffer read before it reports room)."""
        queued = conn.in_kernel()
        if queued < conn.queued:
            conn.queued = queued
            conn.deadline = now + self.timeouts.send
            return
        log.info(
            "%s - dropped: read nothing of its response for %gs", conn.peer[0], self.timeouts.send
        )
        self._close(conn)


class _Watch:
    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
