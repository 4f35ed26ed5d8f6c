"""Everything the realtime endpoints need, assembled once per process: the hub, the bus
dispatcher, the hooks, the ASGI app and uvicorn as protocol engine. The realtime process
serves it on its own port; the threaded server hands it the connections it receives for
realtime paths on http_port (`adopt`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterator

import uvicorn

from prefork.config import Settings
from prefork.db.capacity import catchup_pool_size
from prefork.quiet_log import QuietFilter
from prefork.realtime.app import RealtimeApp
from prefork.realtime.auth import Gate
from prefork.realtime.dispatcher import Dispatcher
from prefork.realtime.engine import Engine
from prefork.realtime.heartbeat import Heartbeat
from prefork.realtime.hub import Hub
from prefork.realtime.require_host import RequireHost
from prefork.realtime.websocket import GOING_AWAY, Services

log = logging.getLogger("prefork.realtime")

CLOSE_GRACE = 1.0  # seconds given to clients to receive their close frame on a stop
MAX_MESSAGE = 1 << 20  # Odoo's cap; larger messages close the websocket with 1009


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the process that runs it has its own."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class RealtimeService:
    def __init__(self, settings: Settings, conninfo: str, draining: Callable[[], bool]) -> None:
        """`draining`: a stop is announced (drain_delay): the health routes answer 503."""
        uvicorn_log = logging.getLogger("uvicorn.error")
        if not log.isEnabledFor(logging.DEBUG):  # uvicorn logs every websocket at INFO
            uvicorn_log.setLevel(logging.WARNING)
        if not any(isinstance(f, QuietFilter) for f in uvicorn_log.filters):
            uvicorn_log.addFilter(QuietFilter())  # a warning per garbage request
        hub = Hub()
        # In multi-processing mode this process's parent is the master.
        master = os.getppid() if settings.multiprocessing else os.getpid()
        self.dispatcher = Dispatcher(
            conninfo,
            hub,
            settings.bus_retention,
            catchup_pool_size(settings),
            chores=[Heartbeat(settings, master)],
        )
        self.services = Services(
            hub, Gate(settings), self.dispatcher.history, lambda: self.dispatcher.last, settings
        )
        app = RequireHost(RealtimeApp(self.services, lambda: self.dispatcher.connected, draining))
        proxy = settings.proxy_mode
        self.config = uvicorn.Config(
            app,
            http="httptools",
            ws=Engine,
            lifespan="off",
            ws_max_size=MAX_MESSAGE,
            ws_ping_interval=settings.websocket_ping_interval,
            ws_ping_timeout=settings.websocket_ping_timeout,
            ws_per_message_deflate=False,
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=proxy,
            forwarded_allow_ips="*" if proxy else None,
            timeout_graceful_shutdown=3,
        )
        self.server = _Server(self.config)
        self._dispatch_task: asyncio.Task[None] | None = None

    def start_dispatcher(self) -> None:
        self._dispatch_task = asyncio.ensure_future(self.dispatcher.run())

    async def serve(self, listener: socket.socket) -> None:
        """Accept on `listener` until stop()."""
        await self.server.serve(sockets=[listener])

    async def adopt(self, sock: socket.socket, head: bytes) -> None:
        """Serve a connection accepted elsewhere, whose request head (and body) `head`
        was already read from it."""
        if not self.config.loaded:
            self.config.load()
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await loop.connect_accepted_socket(
                lambda: self.config.http_protocol_class(  # type: ignore[call-arg]
                    config=self.config, server_state=self.server.server_state, app_state={}
                ),
                sock,
            )
        except OSError as exc:  # the client left during the hand-over
            log.debug("realtime: could not adopt a connection: %s", exc)
            sock.close()
            return
        protocol.data_received(head)

    async def stop(self) -> None:
        """Close every websocket with 1001 (clients reconnect and catch up), then stop."""
        for client in list(self.services.clients):
            client.close(GOING_AWAY)
        if self.services.clients:
            await asyncio.sleep(CLOSE_GRACE)
        self.server.should_exit = True
        if self._dispatch_task is not None:
            self._dispatch_task.cancel()
        await self.dispatcher.close()
