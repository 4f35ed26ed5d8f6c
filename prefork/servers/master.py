"""The master of multi-processing mode: owns the sockets, the signals and the server's own
life (start, reload, drain, stop, upgrade), and runs the loop that supervises the workers.

It never runs application code after forking (with `preload_app` it imports the app once,
before the first fork) and holds no connection a child could inherit. Signal handlers only
enqueue the signal number; the main loop, woken through the signal wake-up pipe, acts on it
with a short `handle_<signal>` method, then reaps children, runs the watchdog and keeps the
worker count at its target.

The work is others': servers/supervisor.py forks, counts, reaps and kills the workers, on
servers/supervision.py's decisions; servers/balancing.py spreads clients over them;
servers/observation.py writes the state file; servers/health.py raises the alerts;
servers/listening.py opens the sockets; servers/upgrade.py hands them to a new master
(USR2).
"""

from __future__ import annotations

import faulthandler
import logging
import os
import queue
import selectors
import signal
import time
from collections.abc import Callable, Sequence
from types import FrameType

from setproctitle import setproctitle

from prefork.config import ConfigError
from prefork.config.loader import Loaded
from prefork.db.startup import DatabaseRuntime
from prefork.dev.reload import CodeReload, dev_warning
from prefork.logs import log_stream
from prefork.ops import sdnotify
from prefork.ops.state import MasterState
from prefork.pidfile import remove_pidfile, write_pidfile
from prefork.servers.balancing import Balancer
from prefork.servers.embedded_supervisor import EmbeddedSupervisor
from prefork.servers.health import Alerts
from prefork.servers.kinds import REALTIME, Inherited
from prefork.servers.listening import (
    Listeners,
    open_listeners,
    reloaded_settings,
    with_realtime_port,
)
from prefork.servers.observation import Observation
from prefork.servers.parking import Parked, Parking
from prefork.servers.supervisor import Supervisor
from prefork.servers.upgrade import Upgrade
from prefork.servers.worker_proc import SIGNALS, WorkerProc
from prefork.sockets import display_address
from prefork.wakeup import WakeupPipe
from prefork.wsgi.handler import WSGIApp

log = logging.getLogger("prefork.master")

TICK = 0.05  # watchdog and RSS-watch period, seconds
EXIT_BOOT_FAILURE = 3


class Master:
    def __init__(
        self,
        loaded: Loaded,
        argv: Sequence[str],
        app: WSGIApp | None = None,
        reload: Callable[[], Loaded] | None = None,
        database: DatabaseRuntime | None = None,
    ) -> None:
        self.loaded = loaded
        self.database = database
        self.settings = loaded.settings
        self.argv = list(argv)
        self.app = app
        self.reload = reload
        self.listening = Listeners([])  # opened by run()
        self.signals: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.stop_deadline = 0.0
        self.drain_until = 0.0  # the monotonic time an announced stop (drain_delay) begins
        self.exit_code = 0
        self.upgrade = Upgrade()
        self.observation = Observation(self.settings)
        self.readiness = sdnotify.Readiness()
        s = self.settings
        self.alerts = Alerts(s)
        self.embedded = EmbeddedSupervisor.of(database, s.alert_window)
        self._wakeup = WakeupPipe()
        self.selector = selectors.DefaultSelector()
        self.selector.register(self._wakeup.read_fd, selectors.EVENT_READ, None)
        self.supervisor = Supervisor(
            s.workers,
            self.selector,
            self.alerts.monitor,
            self.alerts.send,
            lambda: self._begin_stop(EXIT_BOOT_FAILURE),
            self._close_in_child,
        )
        self.balancer = Balancer(Parking(self.selector, s.http_keepalive_timeout))
        self.code_reload: CodeReload | None = None

    @property
    def workers(self) -> dict[int, WorkerProc]:
        return self.supervisor.workers

    @property
    def stopping(self) -> bool:
        return self.supervisor.stopping

    # -- main loop ---------------------------------------------------------------------------

    def run(self) -> int:
        setproctitle("prefork: master")
        wanted = REALTIME.target(self.settings, self.database, self.supervisor.target)
        self.listening = open_listeners(self.settings, realtime_wanted=wanted > 0)
        self.settings = with_realtime_port(self.settings, self.listening)
        self._install_signals()
        write_pidfile(self.settings.pidfile)
        if self.settings.dev_reload:  # watching before the line that says the server is up
            self._watch_code()
        log.info(
            "HTTP service running on %s (multi-processing mode, %d workers, master pid %d)",
            ", ".join(display_address(s) for s in self.listening.http),
            self.supervisor.target,
            os.getpid(),
        )
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
        self.supervisor.watchdog()
        self._maintain()
        self.alerts.send(self.alerts.monitor.check(time.time()))
        self._supervise_database()
        self._announce_ready()
        self.balancer.balance(self.workers.values(), self.supervisor.generation, time.monotonic())
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
                self.balancer.parking.on_readable(data)
            else:
                self._receive_handover(data)
        self.balancer.dispatch(self.workers.values(), self.supervisor.generation, time.monotonic())

    def _receive_handover(self, worker: WorkerProc) -> None:
        if not self.balancer.receive(worker, self.stopping):
            self.supervisor.unwatch_channel(worker)

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
            self.supervisor.kill_all()
            self.stop_deadline = time.monotonic()
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
        self.supervisor.new_generation()
        self.readiness.reloading()  # READY=1 again once the new generation serves
        log.info(
            "reloading: starting %d new worker(s) (generation %d) before stopping the old ones",
            self.supervisor.target,
            self.supervisor.generation,
        )

    def handle_ttin(self) -> None:
        self.supervisor.target += 1
        log.info("one worker more: target is now %d", self.supervisor.target)

    def handle_ttou(self) -> None:
        if self.supervisor.target > 1:
            self.supervisor.target -= 1
        log.info("one worker fewer: target is now %d", self.supervisor.target)

    def handle_quit(self) -> None:
        stream = log_stream()
        stream.write(f"--- stack of prefork master (pid {os.getpid()}) ---\n")
        stream.flush()
        faulthandler.dump_traceback(file=stream, all_threads=True)
        self.supervisor.dump_stacks(stream)  # after the master's, each worker's

    def handle_usr2(self) -> None:
        if self.handed_over or self.stopping or self.drain_until:
            log.warning("USR2 ignored: an upgrade is already running or the master is stopping")
            return
        self.upgrade.start(self.argv, self.listening)

    def handle_chld(self) -> None:
        """Children are reaped on every loop turn; the signal only wakes the loop."""

    # -- reloads -----------------------------------------------------------------------------

    def _watch_code(self) -> None:
        self.code_reload = CodeReload.open(self.settings)
        if self.code_reload.fileno() >= 0:
            self.selector.register(
                self.code_reload.fileno(), selectors.EVENT_READ, self.code_reload
            )

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
        self.settings = reloaded_settings(
            self.settings, loaded.settings, self.listening, self.database
        )
        self.loaded = loaded
        self.supervisor.target = self.settings.workers

    # -- workers -----------------------------------------------------------------------------

    def _maintain(self) -> None:
        if self.stopping:
            return
        inherited = Inherited(
            self.settings, self.listening.http, self.listening.realtime, self.app, self.database
        )
        if self.supervisor.maintain(inherited, bool(self.upgrade.old_master)):
            self.upgrade.finish()

    def _close_in_child(self) -> None:
        """In a new worker: close what belongs to the master."""
        # The epoll instance is shared with the master: close descriptors, never unregister.
        self.balancer.parking.close_copies()
        os.close(self.selector.fileno())
        self._wakeup.close()
        if self.code_reload is not None:
            self.code_reload.close()

    # -- the database and readiness ---------------------------------------------------------

    def _supervise_database(self) -> None:
        """The embedded PostgreSQL this master started, while it serves and has not handed
        over (USR2): the new master watches it then, and this one again if the upgrade
        fails."""
        if self.embedded is not None and not self.stopping and not self.handed_over:
            self.alerts.send(self.embedded.poll(time.monotonic()))

    def _announce_ready(self) -> None:
        """Tell systemd (Type=notify) once every HTTP worker of the generation serves."""
        if not self.readiness.announced and not self.stopping:
            self.readiness.serving(self.supervisor.ready_http(), self.supervisor.target)

    # -- reaping -----------------------------------------------------------------------------

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.upgrade.new_master:
                self.upgrade.failed(status, self.stopping)
            elif self.embedded is not None and self.embedded.owns(pid):
                self.alerts.send(self.embedded.reaped(status, time.monotonic()))
            elif (worker := self.workers.pop(pid, None)) is not None:
                self._receive_handover(worker)  # what it handed over just before exiting
                self.supervisor.reaped(worker, status)

    # -- stopping and upgrading --------------------------------------------------------------

    def _grace(self) -> int:
        return self.settings.limit_time_real or 120

    def _begin_drain(self, delay: float) -> None:
        """Announce the stop: every process's health routes answer 503 'draining' (the
        scoreboard's shared word) while they serve on; the stop begins after `delay`.
        Not after an upgrade: the new master answers on the same sockets."""
        self.drain_until = time.monotonic() + delay
        self.supervisor.scoreboard.set_draining()
        sdnotify.notify("STOPPING=1", f"STATUS=draining for {delay:g} s before stopping")
        log.info(
            "draining for %g s: /web/health answers 503 'draining', requests are still "
            "served; then a graceful stop (TERM again to stop now)",
            delay,
        )

    def _end_drain(self, now: float) -> None:
        if self.drain_until and not self.stopping and now >= self.drain_until:
            log.info("drain over")
            self._stop_gracefully()

    def _stop_gracefully(self) -> None:
        log.info("stopping gracefully (up to %ds for requests in progress)", self._grace())
        self._begin_stop(0)

    def _begin_stop(self, code: int) -> None:
        if not self.handed_over:  # not when a new master (USR2) takes the service over
            sdnotify.notify("STOPPING=1")
        self.exit_code = code
        self.stop_deadline = time.monotonic() + self._grace()
        self.balancer.parking.close_all()
        self.listening.close()
        self.supervisor.stop_all()

    def _finished(self) -> bool:
        if not self.stopping:
            return False
        if not self.workers:
            return True
        if time.monotonic() >= self.stop_deadline:
            self.supervisor.kill_remaining()
            self.stop_deadline = time.monotonic() + 5  # SIGKILL'ed children exit promptly
        return False

    @property
    def handed_over(self) -> bool:
        """True when a new master (USR2) took over: what this one owns stays running."""
        return self.upgrade.handed_over

    def _cleanup(self) -> None:
        if self.code_reload is not None:
            self.code_reload.close()
        if self.embedded is not None:
            self.embedded.settle()  # a start in progress ends before the server is stopped
        self.observation.remove()
        remove_pidfile(self.settings.pidfile)
        if not self.handed_over:
            self.listening.files.remove()
        log.info("master stopped")

    # -- state file ---------------------------------------------------------------------------

    def _publish_state(self) -> None:
        if self.observation.due(time.monotonic()):
            workers = list(self.workers.values())  # one list: the rows follow its order
            self.observation.publish(self.state(workers), workers)

    def state(self, workers: list[WorkerProc]) -> MasterState:
        embedded = self.embedded
        return self.observation.state(
            config=self.loaded.config_path,
            target=self.supervisor.target,
            listeners=self.listening.displayed(),
            workers=workers,
            exits=(record.as_row() for record in self.supervisor.exits),
            alerts=self.alerts.active(embedded.alert if embedded else None),
            database=embedded.state() if embedded is not None else {},
            draining=bool(self.drain_until) and not self.stopping,
        )
