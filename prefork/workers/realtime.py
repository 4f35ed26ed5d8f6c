"""The realtime process: websocket and long-polling clients of the bus, on gevent_port.

Forked by the master like a worker, on a listening socket the master owns (so a restart
loses no connection attempt). One asyncio loop: uvicorn (httptools, websockets) speaks the
protocols, prefork.realtime holds the clients and the bus. Its heartbeat comes from a task
of that loop, so a blocked loop stops it and the master's limit_time_real watchdog acts.
TERM closes every websocket with 1001 (clients reconnect and catch up), then stops.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from types import FrameType
from typing import NoReturn

import psutil

from prefork.addresses import of_socket
from prefork.config import Settings
from prefork.realtime.service import RealtimeService
from prefork.workers import exitcodes
from prefork.workers.process import prepare_process, run_to_exit
from prefork.workers.scoreboard import READY, STOPPING, Slot

log = logging.getLogger("prefork.realtime")

BEAT_INTERVAL = 1.0


def realtime_limits(settings: Settings) -> tuple[int, int]:
    """(soft, hard) memory limits of the realtime process."""
    return (
        settings.limit_memory_soft_gevent or settings.limit_memory_soft,
        settings.limit_memory_hard_gevent or settings.limit_memory_hard,
    )


class RealtimeProcess:
    def __init__(
        self, settings: Settings, slot: Slot, listener: socket.socket, conninfo: str
    ) -> None:
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
        address = of_socket(self.listener)
        where = address.display() if address.unix else f":{address.port}"
        prepare_process(f"realtime {where}", self._on_term, realtime_limits(self.settings)[1])
        asyncio.run(self._serve())
        return self.exit_code if self.exit_code is not None else exitcodes.STOPPED

    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        """Replaced by the loop's own handler once it runs; before that, exit at once."""
        os._exit(exitcodes.STOPPED)

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._request_stop, exitcodes.STOPPED)
        service = RealtimeService(self.settings, self.conninfo, self.slot.draining)
        service.start_dispatcher()
        serving = asyncio.ensure_future(service.serve(self.listener))
        beating = asyncio.ensure_future(self._beat())
        self.slot.set_state(READY)
        await self.stop.wait()
        self.slot.set_state(STOPPING)
        await service.stop()
        await asyncio.wait_for(serving, 5)
        beating.cancel()

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
