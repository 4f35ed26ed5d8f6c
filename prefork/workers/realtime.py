"""The realtime process: websocket and long-polling clients of the bus, on gevent_port.

Forked by the master like a worker, on a listening socket the master owns (so a restart
loses no connection attempt). One asyncio loop: uvicorn (httptools, websockets) speaks the
protocols, prefork.realtime holds the clients and the bus. Its heartbeat comes from a task
of that loop, so a blocked loop stops it and the master's limit_time_real watchdog acts.
TERM closes every websocket with 1001 (clients reconnect and catch up), then stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from types import FrameType
from typing import NoReturn

import psutil
import uvicorn

from prefork.config import Settings
from prefork.realtime.app import RealtimeApp
from prefork.realtime.auth import Gate
from prefork.realtime.dispatcher import Dispatcher
from prefork.realtime.hub import Hub
from prefork.realtime.websocket import GOING_AWAY, Services
from prefork.workers import exitcodes
from prefork.workers.process import prepare_process, run_to_exit
from prefork.workers.scoreboard import READY, STOPPING, Slot

log = logging.getLogger("prefork.realtime")

BEAT_INTERVAL = 1.0
CLOSE_GRACE = 1.0  # seconds given to clients to receive their close frame on a stop
MAX_MESSAGE = 1 << 20  # Odoo's cap; larger messages close the websocket with 1009
PING_INTERVAL, PING_TIMEOUT = 45.0, 15.0


def realtime_limits(settings: Settings) -> tuple[int, int]:
    """(soft, hard) memory limits of the realtime process."""
    return (settings.limit_memory_soft_gevent or settings.limit_memory_soft,
            settings.limit_memory_hard_gevent or settings.limit_memory_hard)


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: this process installs its own."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class RealtimeProcess:
    def __init__(self, settings: Settings, slot: Slot, listener: socket.socket,
                 conninfo: str) -> None:
        self.settings = settings
        self.slot = slot
        self.listener = listener
        self.conninfo = conninfo
        self.master_pid = os.getppid()
        self.exit_code: int | None = None
        self.stop = asyncio.Event()

    def run(self) -> NoReturn:
        run_to_exit("realtime process", self.slot, self._run)

    def _run(self) -> int:
        port = self.listener.getsockname()[1]
        prepare_process(f"realtime :{port}", self._on_term, realtime_limits(self.settings)[1])
        asyncio.run(self._serve())
        return self.exit_code if self.exit_code is not None else exitcodes.STOPPED

    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        """Replaced by the loop's own handler once it runs; before that, exit at once."""
        os._exit(exitcodes.STOPPED)

    async def _serve(self) -> None:
        if not log.isEnabledFor(logging.DEBUG):  # uvicorn logs every websocket at INFO
            logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._request_stop, exitcodes.STOPPED)
        s = self.settings
        hub = Hub()
        dispatcher = Dispatcher(self.conninfo, hub, s.bus_retention,
                                s.db_maxconn_gevent or s.db_maxconn)
        services = Services(hub, Gate(s), dispatcher.history, s.websocket_lifetime,
                            s.proxy_mode)
        server = _Server(self._uvicorn_config(RealtimeApp(services, lambda: dispatcher.connected)))
        tasks = [asyncio.ensure_future(dispatcher.run()),
                 asyncio.ensure_future(server.serve(sockets=[self.listener])),
                 asyncio.ensure_future(self._beat())]
        self.slot.set_state(READY)
        await self.stop.wait()
        self.slot.set_state(STOPPING)
        for client in list(services.clients):
            client.close(GOING_AWAY)
        await asyncio.sleep(CLOSE_GRACE if services.clients else 0)
        server.should_exit = True
        await asyncio.wait_for(tasks[1], CLOSE_GRACE * 5)
        for task in (tasks[0], tasks[2]):
            task.cancel()
        await dispatcher.close()

    def _uvicorn_config(self, app: RealtimeApp) -> uvicorn.Config:
        proxy = self.settings.proxy_mode
        return uvicorn.Config(
            app, http="httptools", ws="websockets-sansio", lifespan="off",
            ws_max_size=MAX_MESSAGE, ws_ping_interval=PING_INTERVAL,
            ws_ping_timeout=PING_TIMEOUT, ws_per_message_deflate=False, log_config=None,
            access_log=False, server_header=False, proxy_headers=proxy,
            forwarded_allow_ips="*" if proxy else None, timeout_graceful_shutdown=3)

    def _request_stop(self, code: int) -> None:
        if self.exit_code is None:
            self.exit_code = code
        self.stop.set()

    async def _beat(self) -> None:
        """Heartbeat, the soft memory limit and the master's presence, once a second."""
        process = psutil.Process()
        soft = realtime_limits(self.settings)[0]
        while True:
            self.slot.beat(time.monotonic())
            if os.getppid() != self.master_pid:
                log.warning("realtime process: master gone, exiting")
                self._request_stop(exitcodes.ORPHANED)
            rss = process.memory_info().rss
            if soft and rss > soft and self.exit_code is None:
                self.slot.mark_exit(rss)
                self._request_stop(exitcodes.MEMORY_SOFT)
            await asyncio.sleep(BEAT_INTERVAL)
