"""The master of multi-processing mode: owns the sockets, forks and supervises workers.

It never runs application code after forking (with `preload_app` it imports the app once,
before the first fork) and holds no connection a child could inherit. Signal handlers only
enqueue the signal number; the main loop, woken through the signal wake-up pipe, acts on it
with a short `handle_<signal>` method, then reaps children, runs the watchdog and keeps the
worker count at its target.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import gc
import logging
import os
import queue
import selectors
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import NoReturn

import psutil
from setproctitle import setproctitle

from prefork import __version__, metrics
from prefork.addresses import http_address, of_socket, realtime_address
from prefork.config import ConfigError, Settings
from prefork.config.loader import Loaded
from prefork.db.startup import DatabaseRuntime
from prefork.db.target import resolve_target
from prefork.dev.reload import CodeReload, dev_warning
from prefork.logs import log_stream
from prefork.ops import sdnotify
from prefork.ops.state import MasterState, ProcessRow, remove_state, state_path, write_state
from prefork.ops.webhook import Webhook
from prefork.pidfile import remove_pidfile, write_pidfile
from prefork.servers.embedded_supervisor import EmbeddedSupervisor
from prefork.servers.exits import ROUTINE, ExitReason, ExitRecord, KillOrder, classify, mib
from prefork.servers.health import Alert, HealthMonitor
from prefork.servers.kinds import (
    CRON,
    HTTP,
    KINDS,
    REALTIME,
    Inherited,
    ProcessKind,
    WorkerLimits,
)
from prefork.servers.parking import Candidate, Parked, Parking
from prefork.sockets import (
    display_address,
    handover_env,
    inherited_listeners,
    listen_http,
    listen_realtime,
)
from prefork.unix_socket import SocketFiles
from prefork.wakeup import WakeupPipe
from prefork.workers.handoff import channel_pair, receive_connections
from prefork.workers.http import REBALANCE_AFTER
from prefork.workers.scoreboard import (
    BOOTING,
    MEMORY_LIMIT,
    READY,
    REAL_TIME_LIMIT,
    RETIRING,
    STOPPING,
    Scoreboard,
    Slot,
    SlotView,
)
from prefork.wsgi.handler import WSGIApp

log = logging.getLogger("prefork.master")

TICK = 0.05                 # watchdog and RSS-watch period, seconds
STATE_INTERVAL = 1.0
MAX_BOOT_ATTEMPTS = 5       # consecutive workers dying before ready: give up
BOOT_BACKOFF_START = 0.1
BOOT_BACKOFF_MAX = 3.2
EXIT_BOOT_FAILURE = 3
KEPT_EXITS = 100
QUIT_SPACING = 0.05
UPGRADE_ENV = "PREFORK_UPGRADE_FROM"
REALTIME_FD_ENV = "PREFORK_REALTIME_FD"
BALANCE_INTERVAL = 0.1  # seconds between two looks at how clients spread over the workers
BALANCE_SPREAD = 2  # connections more than the least loaded worker before handing some over
MEMORY_SAMPLE = 30  # seconds between two points of the dashboard's memory chart
MEMORY_POINTS = 120  # an hour of them
CRON_GRACE = 5  # seconds the master gives a cron worker to record its own timeout
# Seconds an HTTP worker told to stop its request at a limit (SIGUSR1) has to answer the
# client and exit before SIGKILL: unwinding and a short response take milliseconds; only a
# request that never returns to the interpreter (a long C call) uses them up.
LIMIT_ANSWER_GRACE = 3.0
SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGTTIN", "SIGTTOU", "SIGQUIT", "SIGUSR2",
           "SIGCHLD")


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


class Master:
    def __init__(self, loaded: Loaded, argv: Sequence[str], app: WSGIApp | None = None,
                 reload: Callable[[], Loaded] | None = None,
                 database: DatabaseRuntime | None = None) -> None:
        self.loaded = loaded
        self.database = database
        self.settings = loaded.settings
        self.argv = list(argv)
        self.app = app
        self.reload = reload
        self.target = self.settings.workers
        self.generation = 1  # the generation of workers being started or serving
        self.generations = 1  # the last generation number given (HUP, dev reload)
        self.workers: dict[int, WorkerProc] = {}
        self.scoreboard = Scoreboard()
        self.exits: deque[ExitRecord] = deque(maxlen=KEPT_EXITS)
        self.listeners: list[socket.socket] = []
        self.realtime_listener: socket.socket | None = None
        self.socket_files = SocketFiles()  # removed at the end, unless handed over
        self.signals: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.stopping = False
        self.stop_deadline = 0.0
        self.drain_until = 0.0  # the monotonic time an announced stop (drain_delay) begins
        self.exit_code = 0
        self.boot_failures = 0
        self.next_spawn = 0.0
        self.upgrade_pid: int | None = None
        self.upgrade_from = int(os.environ.pop(UPGRADE_ENV, "0") or 0)
        self.state_file = state_path(self.settings)
        self.next_state = 0.0
        self.next_balance = 0.0
        self.next_memory_sample = 0.0
        self.memory_history: dict[str, deque[tuple[int, int]]] = {}
        self.announced_ready = False
        s = self.settings
        self.health = HealthMonitor(s.alert_window, s.alert_crashes, s.alert_limit_kills)
        self.webhook = Webhook(s.alert_webhook) if s.alert_webhook else None
        embedded = database.embedded if database is not None else None
        self.embedded = (EmbeddedSupervisor(embedded, s.alert_window)
                         if embedded is not None else None)
        self.started_at = time.time()
        self.process = psutil.Process()
        self._wakeup = WakeupPipe()
        self.selector = selectors.DefaultSelector()
        self.selector.register(self._wakeup.read_fd, selectors.EVENT_READ, None)
        self.parking = Parking(self.selector, self.settings.http_keepalive_timeout)
        self.code_reload: CodeReload | None = None

    # -- main loop ---------------------------------------------------------------------------

    def run(self) -> int:
        setproctitle("prefork: master")
        self._open_listeners()
        self._install_signals()
        write_pidfile(self.settings.pidfile)
        if self.settings.dev_reload:  # watching before the line that says the server is up
            self._watch_code()
        log.info("HTTP service running on %s (multi-processing mode, %d workers, master pid %d)",
                 ", ".join(display_address(s) for s in self.listeners), self.target,
                 os.getpid())
        if self.code_reload is not None:
            log.warning("%s", dev_warning(self.settings, self.code_reload))
        while not self._finished():
            try:
                self._turn()
            except Exception:
                # The master must outlive its own bugs: its workers depend on it.
                log.exception("unexpected error in the master loop; continuing")
                time.sleep(TICK)
        self._cleanup()
        return self.exit_code

    def _turn(self) -> None:
        self._sleep()
        self._handle_signals()
        self._reload_code(time.monotonic())
        self._end_drain(time.monotonic())
        self._reap()
        self._watchdog()
        self._maintain()
        self._alert(self.health.check(time.time()))
        self._supervise_database()
        self._announce_ready()
        self._balance(time.monotonic())
        self._publish_state()

    def _sleep(self) -> None:
        """Wait for a signal, a handed-over connection or a parked client, at most TICK."""
        for key, _ in self.selector.select(TICK):
            data = key.data
            if data is None:
                self._wakeup.drain()
            elif data is self.code_reload:
                pass  # read by _reload_code, this turn
            elif isinstance(data, Parked):
                self.parking.on_readable(data)
            else:
                self._receive_handover(data)
        self.parking.expire(time.monotonic())
        self.parking.dispatch(self._idle_channels())

    def _receive_handover(self, worker: WorkerProc) -> None:
        if worker.channel.fileno() < 0:
            return
        received, closed = receive_connections(worker.channel)
        for handed in received:
            if self.stopping:
                handed.sock.close()
            else:
                self.parking.park(handed)
        if closed:
            self._unwatch_channel(worker)

    def _idle_channels(self) -> list[Candidate]:
        """The current workers best placed to serve a parked client now, with how many
        connections each holds.

        Idle workers first; when none is idle at this instant (a busy server), those whose
        request started less than REBALANCE_AFTER ago: they take the connection as soon as
        it ends. A worker deep in a long request is never given one.
        """
        idle: list[Candidate] = []
        short: list[Candidate] = []
        for worker, view in self._available_http_workers(time.monotonic()):
            candidate = Candidate(worker.channel, view.connections)
            (short if view.request_started else idle).append(candidate)
        return idle or short

    def _available_http_workers(self, now: float) -> Iterator[tuple[WorkerProc, SlotView]]:
        """Ready HTTP workers of the current generation not deep in a long request."""
        for worker in self.workers.values():
            if (worker.terminating or worker.generation != self.generation
                    or worker.kind is not HTTP):
                continue
            view = worker.slot.read()
            if view.state == READY and (not view.request_started
                                        or now - view.request_started < REBALANCE_AFTER):
                yield worker, view

    def _balance(self, now: float) -> None:
        """Ask the worker holding the most clients to hand some over when another holds at
        least BALANCE_SPREAD fewer; the parking gives them to the least loaded. Workers in
        a long request take no part: they hand their clients over by themselves."""
        if now < self.next_balance or self.parking.waiting:
            return
        self.next_balance = now + BALANCE_INTERVAL
        loads = [(view.connections, worker) for worker, view in self._available_http_workers(now)]
        if len(loads) < 2:
            return
        most, heaviest = max(loads, key=lambda load: load[0])
        fewest = min(count for count, _ in loads)
        if most - fewest >= BALANCE_SPREAD:
            heaviest.slot.request_shed((most - fewest) // 2)

    def _open_listeners(self) -> None:
        s = self.settings
        inherited, from_systemd = inherited_listeners()
        if inherited:
            log.info("using %d inherited listening socket(s)", len(inherited))
            # From an upgrade, the old master names the realtime socket; from systemd, its
            # address tells it.
            realtime_fd = int(os.environ.pop(REALTIME_FD_ENV, "") or -1)
            wanted = realtime_address(s)
            realtime = [sock for sock in inherited if sock.fileno() == realtime_fd
                        or (realtime_fd < 0 and wanted.same_socket(sock))]
            self.listeners = [sock for sock in inherited if sock not in realtime]
            self.realtime_listener = realtime[0] if realtime else None
        else:
            self.listeners = [listen_http(s)]
        if REALTIME.target(s, self.database, self.target) and self.realtime_listener is None:
            self.realtime_listener = listen_realtime(s)
        for sock in self._all_listeners():
            if not (from_systemd and sock in inherited):
                self.socket_files.claim(sock)
        if self.realtime_listener is not None:
            log.info("realtime service (websocket, long-polling) on %s",
                     display_address(self.realtime_listener))
            bound = of_socket(self.realtime_listener)
            if not bound.unix:
                # Port 0 asks for any free port: workers direct clients to the one chosen.
                self.settings = dataclasses.replace(s, gevent_port=bound.port)

    # -- signals -----------------------------------------------------------------------------

    def _install_signals(self) -> None:
        for name in SIGNALS:
            signal.signal(getattr(signal, name), self._enqueue_signal)
        signal.set_wakeup_fd(self._wakeup.write_fd, warn_on_full_buffer=False)

    def _enqueue_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals.put(signum)

    def _handle_signals(self) -> None:
        while not self.signals.empty():
            name = signal.Signals(self.signals.get()).name
            handler = getattr(self, "handle_" + name[3:].lower())
            handler()

    def handle_term(self) -> None:
        """Graceful stop, after the drain if drain_delay is set; again during the drain:
        the graceful stop now; again during the graceful stop: SIGKILL for every worker."""
        if self.stopping:
            log.warning("stop requested again: killing %d worker(s) now", len(self.workers))
            self._kill_all()
        elif self.drain_until:
            log.info("stop requested again: ending the drain now")
            self._stop_gracefully()
        elif self.settings.drain_delay and not self.handed_over:
            self._begin_drain(self.settings.drain_delay)
        else:
            self._stop_gracefully()

    handle_int = handle_term

    def handle_hup(self) -> None:
        if self.stopping:
            return
        if self.drain_until:
            log.warning("HUP ignored: the server is draining before it stops")
            return
        if self.reload is not None:
            try:
                loaded = self.reload()
            except ConfigError as exc:
                log.error("reload refused, keeping the running configuration: %s", exc)
                return
            self._apply_reload(loaded)
        self._start_generation()

    def _start_generation(self) -> None:
        self.generations += 1
        self.generation = self.generations
        sdnotify.reloading()
        self.announced_ready = False  # READY=1 again once the new generation serves
        log.info("reloading: starting %d new worker(s) (generation %d) before stopping the "
                 "old ones", self.target, self.generation)

    def handle_ttin(self) -> None:
        self.target += 1
        log.info("one worker more: target is now %d", self.target)

    def handle_ttou(self) -> None:
        if self.target > 1:
            self.target -= 1
        log.info("one worker fewer: target is now %d", self.target)

    def handle_quit(self) -> None:
        stream = log_stream()
        stream.write(f"--- stack of prefork master (pid {os.getpid()}) ---\n")
        stream.flush()
        faulthandler.dump_traceback(file=stream, all_threads=True)
        for worker in list(self.workers.values()):
            stream.write(f"--- stack of prefork {worker.role} (pid {worker.pid}) ---\n")
            stream.flush()
            self._signal(worker, signal.SIGQUIT)
            time.sleep(QUIT_SPACING)  # dumps are written asynchronously: keep them apart

    def handle_usr2(self) -> None:
        if self.upgrade_pid is not None or self.stopping or self.drain_until:
            log.warning("USR2 ignored: an upgrade is already running or the master is stopping")
            return
        env = {**os.environ, **handover_env(self._all_listeners()), UPGRADE_ENV: str(os.getpid())}
        if self.realtime_listener is not None:
            env[REALTIME_FD_ENV] = str(self.realtime_listener.fileno())
        command = [sys.executable, "-m", "prefork", *self.argv]
        pid = os.fork()
        if pid == 0:
            try:
                os.execve(sys.executable, command, env)
            finally:
                os._exit(127)
        self.upgrade_pid = pid
        log.info("upgrade: started a new master (pid %d) with the listening sockets", pid)

    def handle_chld(self) -> None:
        """Children are reaped on every loop turn; the signal only wakes the loop."""

    # -- dev reload --------------------------------------------------------------------------

    def _watch_code(self) -> None:
        self.code_reload = CodeReload.open(self.settings)
        if self.code_reload.fileno() >= 0:
            self.selector.register(self.code_reload.fileno(), selectors.EVENT_READ,
                                   self.code_reload)

    def _reload_code(self, now: float) -> None:
        """A code change that compiles: new workers, which import it (the loader refuses
        preload_app with dev reload: the master would hold the old code)."""
        if self.code_reload is None:
            return
        changed = self.code_reload.due(now)
        if changed and not (self.stopping or self.drain_until or self.handed_over):
            log.info("dev reload: %s changed", self.code_reload.named(changed))
            self._start_generation()

    def _apply_reload(self, loaded: Loaded) -> None:
        for warning in loaded.warnings:
            if warning not in self.loaded.warnings:  # the start (or last HUP) logged the rest
                log.warning("%s", warning)
        new = loaded.settings
        if http_address(new) != http_address(self.settings):
            log.warning("http_port/http_interface changes need a restart or an upgrade (USR2); "
                        "keeping %s", display_address(self.listeners[0]))
        if self.database is not None and resolve_target(new) != resolve_target(self.settings):
            log.warning("database settings changes need a restart or an upgrade (USR2); "
                        "keeping %s", self.database.target.describe())
        if self.realtime_listener is not None:
            new = self._keep_realtime_address(new)
        self.loaded = loaded
        self.settings = new
        self.target = new.workers

    def _keep_realtime_address(self, new: Settings) -> Settings:
        """`new` with the realtime address of the running listener, which a reload keeps."""
        assert self.realtime_listener is not None
        running = of_socket(self.realtime_listener)
        wanted = realtime_address(new)
        if not (wanted.same_socket(self.realtime_listener) or (wanted.port == 0
                                                               and not wanted.unix)):
            log.warning("gevent_port/gevent_interface changes need a restart or an upgrade "
                        "(USR2); keeping %s", running.display())
        if running.unix:
            return dataclasses.replace(new, gevent_interface=self.settings.gevent_interface)
        return dataclasses.replace(new, gevent_port=running.port)

    # -- workers -----------------------------------------------------------------------------

    def _maintain(self) -> None:
        if self.stopping:
            return
        current = [w for w in self.workers.values()
                   if w.generation == self.generation and not w.terminating]
        # An HTTP worker recycling itself is replaced at once: it serves on (RETIRING) or
        # finishes its last request (STOPPING) while its successor starts.
        states = {w.pid: w.slot.read().state for w in current if w.kind is HTTP}
        current = [w for w in current if states.get(w.pid) not in (RETIRING, STOPPING)]
        for kind in KINDS:
            target = kind.target(self.settings, self.database, self.target)
            self._keep_count([w for w in current if w.kind is kind], kind, target)
        self._retire_old_generation([w for w in current if w.kind is HTTP])
        retiring = [self.workers[pid] for pid, state in states.items() if state == RETIRING]
        ready = sum(1 for state in states.values() if state == READY)
        self._stop_retiring(retiring, ready)

    def _keep_count(self, current: list[WorkerProc], kind: ProcessKind, target: int) -> None:
        if len(current) < target and time.monotonic() >= self.next_spawn:
            used = {w.number for w in current}
            number = next(n for n in range(1, len(current) + 2) if n not in used)
            self._spawn(number, kind)
        elif len(current) > target:
            self._terminate(max(current, key=lambda w: w.number))

    def _all_listeners(self) -> list[socket.socket]:
        extra = [self.realtime_listener] if self.realtime_listener is not None else []
        return self.listeners + extra

    def _alert(self, events: list[tuple[str, Alert]]) -> None:
        """Alerts raised or cleared: to the webhook (the log line is the monitor's)."""
        for event, alert in events:
            if self.webhook is not None:
                self.webhook.send({"event": event, "server": socket.gethostname(),
                                   "master_pid": os.getpid(), **alert.as_dict()})

    def _supervise_database(self) -> None:
        """The embedded PostgreSQL this master started, while it serves and has not handed
        over (USR2): the new master watches it then, and this one again if the upgrade
        fails."""
        if self.embedded is not None and not self.stopping and not self.handed_over:
            self._alert(self.embedded.poll(time.monotonic()))

    def _announce_ready(self) -> None:
        """Tell systemd (Type=notify) once every HTTP worker of the generation serves: at
        start, after a reload, and from a new master after an upgrade (with its pid)."""
        if self.announced_ready or self.stopping:
            return
        ready = sum(1 for w in self.workers.values() if w.kind is HTTP and not w.terminating
                    and w.generation == self.generation and w.slot.read().state == READY)
        if ready >= self.target:
            self.announced_ready = True
            sdnotify.notify("READY=1", f"MAINPID={os.getpid()}",
                            f"STATUS=serving with {ready} HTTP worker(s)")

    def _retire_old_generation(self, current: list[WorkerProc]) -> None:
        """Once the current generation is all ready, stop the old one (reload) or the old
        master (upgrade): new workers accept before old ones stop."""
        old = [w for w in self.workers.values()
               if w.generation != self.generation and not w.terminating]
        if not old and not self.upgrade_from:
            return
        ready = [w for w in current if w.slot.read().state == READY]
        if len(ready) < self.target:
            return
        for worker in old:
            self._terminate(worker)
        if old:
            log.info("reload: %d new worker(s) ready, %d old process(es) stopping", len(ready),
                     len(old))
        self._finish_upgrade()

    def _stop_retiring(self, retiring: list[WorkerProc], ready: int) -> None:
        """Stop workers past limit_request as long as `ready` others and those left make
        the target; each hands its idle clients over, and the least loaded worker (its
        successor) takes them."""
        for worker in retiring[:max(0, ready - self.target + len(retiring))]:
            self._terminate(worker)

    def _spawn(self, number: int, kind: ProcessKind = HTTP) -> None:
        slot = self.scoreboard.acquire()
        master_end, worker_end = channel_pair()
        pid = fork_worker()
        if pid == 0:
            master_end.close()
            self._become_worker(number, slot, worker_end, kind)
        worker_end.close()
        slot.set_pid(pid)
        worker = WorkerProc(pid, number, slot, self.generation, master_end, kind,
                            kind.limits(self.settings))
        self.selector.register(master_end, selectors.EVENT_READ, worker)
        try:
            worker.process = psutil.Process(pid)
        except psutil.Error:
            worker.process = None
        self.workers[pid] = worker
        log.info("spawned %s pid=%d", worker.role, pid)

    def _become_worker(self, number: int, slot: Slot, channel: socket.socket,
                       kind: ProcessKind) -> NoReturn:
        """In the child: drop the master's own state and serve; never returns."""
        try:
            signal.set_wakeup_fd(-1)
            for name in SIGNALS:
                signal.signal(getattr(signal, name), signal.SIG_DFL)
            self._close_inherited()
            inherited = Inherited(self.settings, self.listeners, self.realtime_listener,
                                  self.app, self.database)
            run = kind.start(inherited, number, slot, channel)
        except BaseException:
            os._exit(1)
        run()

    def _close_inherited(self) -> None:
        """In a new worker: close what belongs to the master and to the other workers."""
        # The epoll instance is shared with the master: close descriptors, never unregister.
        for worker in self.workers.values():
            worker.channel.close()
        self.parking.close_copies()
        os.close(self.selector.fileno())
        self._wakeup.close()
        if self.code_reload is not None:
            self.code_reload.close()

    def _terminate(self, worker: WorkerProc) -> None:
        worker.terminating = True
        self._signal(worker, signal.SIGTERM)

    def _kill(self, worker: WorkerProc, reason: ExitReason, detail: str) -> None:
        worker.order = KillOrder(reason, detail)
        self._signal(worker, signal.SIGKILL)

    def _stop_request(self, worker: WorkerProc, limit: int, reason: ExitReason,
                      detail: str) -> None:
        """A limit reached by an HTTP worker: it answers its client and exits (SIGUSR1, the
        limit named in its slot), or is killed after LIMIT_ANSWER_GRACE. The other kinds
        answer no client: killed at once."""
        if not worker.kind.answers_clients:
            self._kill(worker, reason, detail)
            return
        worker.order = KillOrder(reason, detail)
        worker.kill_at = time.monotonic() + LIMIT_ANSWER_GRACE
        worker.slot.order_stop(limit)
        self._signal(worker, signal.SIGUSR1)

    def _kill_late(self, worker: WorkerProc, now: float) -> None:
        """SIGKILL for a worker still running at the end of its grace."""
        if worker.kill_at and now >= worker.kill_at:
            worker.kill_at = 0.0
            log.warning("%s (pid %d) did not stop its request within %.0fs: killing it",
                        worker.role, worker.pid, LIMIT_ANSWER_GRACE)
            self._signal(worker, signal.SIGKILL)

    def _signal(self, worker: WorkerProc, signum: int) -> None:
        try:
            os.kill(worker.pid, signum)
        except ProcessLookupError:
            pass

    def _kill_all(self) -> None:
        for worker in list(self.workers.values()):
            self._signal(worker, signal.SIGKILL)
        self.stop_deadline = time.monotonic()

    # -- reaping -----------------------------------------------------------------------------

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.upgrade_pid:
                self._upgrade_failed(status)
            elif self.embedded is not None and self.embedded.owns(pid):
                self._alert(self.embedded.reaped(status, time.monotonic()))
            elif pid in self.workers:
                worker = self.workers.pop(pid)
                self._receive_handover(worker)  # what it handed over just before exiting
                self._close_channel(worker)
                self._record_exit(worker, status)

    def _unwatch_channel(self, worker: WorkerProc) -> None:
        fd = worker.channel.fileno()
        if fd >= 0 and fd in self.selector.get_map():
            self.selector.unregister(worker.channel)

    def _close_channel(self, worker: WorkerProc) -> None:
        self._unwatch_channel(worker)
        worker.channel.close()

    def _record_exit(self, worker: WorkerProc, status: int) -> None:
        view = worker.slot.read()
        replacing = worker.terminating and worker.generation != self.generation
        reason, detail = classify(status, view, worker.order, worker.limits, replacing)
        if view.request_started:
            request = view.request_line
        else:  # a worker that recycled itself names the request that decided it
            memory = (ExitReason.MEMORY_SOFT, ExitReason.MEMORY_HARD)
            request = view.exit_line if reason in memory else ""
        crashed = reason in (ExitReason.CRASH, ExitReason.BOOT_FAILED)
        record = ExitRecord(worker.pid, worker.role, reason, detail, request,
                            view.error if crashed else "")
        self.exits.append(record)
        self._alert(self.health.record(record))
        counters = metrics.current()
        if counters is not None:
            counters.exits.labels(worker.kind.name, reason).inc()
            metrics.process_exited(worker.pid)
        self.scoreboard.release(worker.slot)
        self._log_exit(record, worker)
        self._count_boot(worker, view.state, record)

    def _log_exit(self, record: ExitRecord, worker: WorkerProc) -> None:
        if record.reason in ROUTINE:
            log.info("%s", record.log_line())
        elif record.reason is ExitReason.MEMORY_SOFT:
            log.warning("%s", record.log_line())
        elif record.error and record.reason is ExitReason.CRASH:
            log.error("%s; last traceback:\n%s", record.log_line(), record.error.rstrip())
        else:
            log.error("%s", record.log_line())

    def _count_boot(self, worker: WorkerProc, state: int, record: ExitRecord) -> None:
        # A slot never goes back to BOOTING: any other state means the worker got ready.
        if state != BOOTING or worker.terminating or self.stopping:
            self.boot_failures = 0
            return
        previous = self._previous_generation()
        if previous:
            self._abandon_generation(previous, record)
            return
        self.boot_failures += 1
        if self.boot_failures >= MAX_BOOT_ATTEMPTS:
            log.error("workers failed to start %d times in a row; giving up. Last error:"
                      "\n%s", self.boot_failures, record.error.strip() or record.detail)
            self._begin_stop(EXIT_BOOT_FAILURE)
            return
        delay = min(BOOT_BACKOFF_START * 2 ** (self.boot_failures - 1), BOOT_BACKOFF_MAX)
        self.next_spawn = time.monotonic() + delay
        log.warning("worker failed to start (%d/%d); next attempt in %.1fs",
                    self.boot_failures, MAX_BOOT_ATTEMPTS, delay)

    def _previous_generation(self) -> int:
        """The newest older generation still serving during a reload; 0 when none."""
        return max((w.generation for w in self.workers.values()
                    if w.generation != self.generation and not w.terminating), default=0)

    def _abandon_generation(self, previous: int, record: ExitRecord) -> None:
        """A new worker failed to start while the previous generation serves (the new code
        raises at import, say): keep that one serving. Retrying would fail the same way
        and end, after MAX_BOOT_ATTEMPTS, by stopping the server, old workers included.
        The next reload tries again."""
        abandoned = self.generation
        for worker in list(self.workers.values()):
            if worker.generation == abandoned and not worker.terminating:
                self._terminate(worker)
        self.generation = previous
        self.boot_failures = 0
        reason = record.error.strip().splitlines()[-1] if record.error.strip() else record.detail
        log.error("reload abandoned: %s of generation %d could not start (%s); generation "
                  "%d keeps serving. Fix the error, then reload (HUP, or a code change with "
                  "dev reload)", record.role, abandoned, reason or record.reason, previous)

    # -- watchdog ----------------------------------------------------------------------------

    def _watchdog(self) -> None:
        now = time.monotonic()
        for worker in list(self.workers.values()):
            if worker.order is not None:
                self._kill_late(worker, now)
                continue
            view = worker.slot.read()
            self._check_time(worker, view.state, view.request_started, view.heartbeat, now)
            if worker.order is None:
                self._check_memory(worker)

    def _check_time(self, worker: WorkerProc, state: int, started: float, beat: float,
                    now: float) -> None:
        if started:
            self._check_running(worker, now - started)
            return
        limit = worker.limits.time_real
        if not limit:
            return
        if state == BOOTING and now - worker.started > limit:
            self._kill(worker, ExitReason.BOOT_TIMEOUT, f"not ready after {limit}s")
        elif state in (READY, RETIRING) and beat and now - beat > limit:
            self._kill(worker, ExitReason.REAL_TIME, f"event loop silent for {now - beat:.1f}s")

    def _check_running(self, worker: WorkerProc, elapsed: float) -> None:
        """A request past limit_time_real; a cron job past its limit that the worker did
        not stop itself (it records the timeout and exits on its own first)."""
        limits = worker.limits
        if worker.kind is CRON:
            limit = limits.time_real_job
            if limit and elapsed > limit + CRON_GRACE:
                self._kill(worker, ExitReason.CRON_TIMEOUT, f"job running {elapsed:.1f}s > "
                           f"limit {limit}s and did not stop itself")
        elif limits.time_real and elapsed > limits.time_real:
            self._stop_request(worker, REAL_TIME_LIMIT, ExitReason.REAL_TIME, f"request "
                               f"running {elapsed:.1f}s > limit {limits.time_real}s")

    def _check_memory(self, worker: WorkerProc) -> None:
        limit = worker.limits.memory_hard
        if not limit or worker.process is None:
            return
        try:
            rss = worker.process.memory_info().rss
        except psutil.Error:
            return
        if rss > limit:
            self._stop_request(worker, MEMORY_LIMIT, ExitReason.MEMORY_HARD,
                               f"RSS {mib(rss)} > limit {mib(limit)}")

    # -- stopping and upgrading --------------------------------------------------------------

    def _grace(self) -> int:
        return self.settings.limit_time_real or 120

    def _begin_drain(self, delay: float) -> None:
        """Announce the stop: every process's health routes answer 503 'draining' (the
        scoreboard's shared word) while they serve on; the stop begins after `delay`.
        Not after an upgrade: the new master answers on the same sockets."""
        self.drain_until = time.monotonic() + delay
        self.scoreboard.set_draining()
        sdnotify.notify("STOPPING=1", f"STATUS=draining for {delay:g} s before stopping")
        log.info("draining for %g s: /web/health answers 503 'draining', requests are still "
                 "served; then a graceful stop (TERM again to stop now)", delay)

    def _end_drain(self, now: float) -> None:
        if self.drain_until and not self.stopping and now >= self.drain_until:
            log.info("drain over")
            self._stop_gracefully()

    def _stop_gracefully(self) -> None:
        log.info("stopping gracefully (up to %ds for requests in progress)", self._grace())
        self._begin_stop(0)

    def _begin_stop(self, code: int) -> None:
        self.stopping = True
        if self.upgrade_pid is None:  # not when a new master (USR2) takes the service over
            sdnotify.notify("STOPPING=1")
        self.exit_code = code
        self.stop_deadline = time.monotonic() + self._grace()
        self.parking.close_all()
        for worker in self.workers.values():  # stopping workers then keep their clients
            self._close_channel(worker)
        for sock in self._all_listeners():
            sock.close()
        for worker in list(self.workers.values()):
            self._terminate(worker)

    def _finished(self) -> bool:
        if not self.stopping:
            return False
        if not self.workers:
            return True
        if time.monotonic() >= self.stop_deadline:
            if not all(w.order for w in self.workers.values()):
                log.warning("stop timeout: killing %d worker(s)", len(self.workers))
                for worker in list(self.workers.values()):
                    self._kill(worker, ExitReason.STOP_TIMEOUT, "")
            self.stop_deadline = time.monotonic() + 5  # SIGKILL'ed children exit promptly
        return False

    def _finish_upgrade(self) -> None:
        if self.upgrade_from:
            log.info("upgrade: workers ready, asking the old master (pid %d) to stop",
                     self.upgrade_from)
            try:
                os.kill(self.upgrade_from, signal.SIGTERM)
            except ProcessLookupError:
                pass
            self.upgrade_from = 0

    def _upgrade_failed(self, status: int) -> None:
        self.upgrade_pid = None
        if not self.stopping:
            log.error("upgrade failed: the new master exited (status %d); still serving",
                      os.waitstatus_to_exitcode(status))

    @property
    def handed_over(self) -> bool:
        """True when a new master (USR2) took over: what this one owns stays running."""
        return self.upgrade_pid is not None

    def _cleanup(self) -> None:
        if self.code_reload is not None:
            self.code_reload.close()
        if self.embedded is not None:
            self.embedded.settle()  # a start in progress ends before the server is stopped
        remove_state(self.state_file)
        remove_pidfile(self.settings.pidfile)
        if not self.handed_over:
            self.socket_files.remove()
        log.info("master stopped")

    # -- state file ---------------------------------------------------------------------------

    def _publish_state(self) -> None:
        now = time.monotonic()
        if now < self.next_state:
            return
        self.next_state = now + STATE_INTERVAL
        state = self.state()
        try:
            write_state(self.state_file, state)
        except OSError as exc:
            log.warning("cannot write the state file %s: %s", self.state_file, exc)
        self._publish_rss(state)
        self._sample_memory(state)

    def _sample_memory(self, state: MasterState) -> None:
        """Each process's RSS every MEMORY_SAMPLE seconds over the last hour, by role (a
        worker's replacement continues its line), for the dashboard's chart."""
        now = time.monotonic()
        if now < self.next_memory_sample:
            return
        self.next_memory_sample = now + MEMORY_SAMPLE
        at = round(time.time())  # the chart's time axis
        for row in [state["master"], *state["processes"]]:
            history = self.memory_history.setdefault(row["role"],
                                                     deque(maxlen=MEMORY_POINTS))
            history.append((at, row["rss"]))

    def _publish_rss(self, state: MasterState) -> None:
        counters = metrics.current()
        if counters is None:
            return
        totals: dict[str, int] = {"master": state["master"]["rss"]}
        for worker, row in zip(self.workers.values(), state["processes"], strict=True):
            totals[worker.kind.name] = totals.get(worker.kind.name, 0) + row["rss"]
        for role in ("master", *(kind.name for kind in KINDS)):
            counters.rss.labels(role).set(totals.get(role, 0))

    def state(self) -> MasterState:
        now = time.monotonic()
        master = _process_row(self.process, "master", self.started_at, 0, "", 0.0)
        if self.drain_until and not self.stopping:
            master["state"] = "draining"
        return {
            "version": __version__,
            "master": master,
            "config": self.loaded.config_path,
            "mode": "multi-processing",
            "target_workers": self.target,
            "listeners": [display_address(s) for s in self._all_listeners() if s.fileno() >= 0],
            "processes": [self._worker_row(w, now) for w in self.workers.values()],
            "exits": [record.as_row() for record in self.exits],
            "alerts": [alert.as_dict() for alert in self._active_alerts()],
            "database": self.embedded.state() if self.embedded is not None else {},
            "memory_history": {role: list(points)
                               for role, points in self.memory_history.items()},
        }

    def _active_alerts(self) -> list[Alert]:
        embedded = self.embedded.alert if self.embedded is not None else None
        return [*self.health.active.values(), *([embedded] if embedded else [])]

    def _worker_row(self, worker: WorkerProc, now: float) -> ProcessRow:
        view = worker.slot.read()
        elapsed = now - view.request_started if view.request_started else 0.0
        line = view.request_line if view.request_started else ""
        row = _process_row(worker.process, worker.role, worker.started_at, view.requests, line,
                           elapsed)
        row["state"] = "stopping" if worker.terminating else _STATE_LABELS.get(view.state, "?")
        row["generation"] = worker.generation
        row["sending_bytes"] = view.sending_bytes
        row["sending_clients"] = view.sending_clients
        return row


_STATE_LABELS = {BOOTING: "booting", READY: "ready", RETIRING: "retiring",
                 STOPPING: "stopping"}
_MASTER_SIGNALS = {getattr(signal, name) for name in SIGNALS}


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



def _process_row(process: psutil.Process | None, role: str, started_at: float, requests: int,
                 request: str, elapsed: float) -> ProcessRow:
    rss, cpu = 0, 0.0
    if process is not None:
        try:
            with process.oneshot():
                rss = process.memory_info().rss
                cpu = process.cpu_percent(interval=None)
        except psutil.Error:
            pass
    return {"pid": process.pid if process else 0, "role": role, "rss": rss, "cpu": cpu,
            "requests": requests, "started_at": started_at, "request": request,
            "request_seconds": round(elapsed, 3), "state": "running"}
