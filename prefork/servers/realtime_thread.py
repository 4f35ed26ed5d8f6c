"""Threaded mode's realtime endpoints: the realtime service on a thread of its own, with
its own asyncio loop, served on http_port. The HTTP event loop recognises the realtime
paths and hands those connections over, request included (`hand_over`)."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from prefork.config import Settings
from prefork.http.request import Request
from prefork.realtime.service import RealtimeService

log = logging.getLogger("prefork.realtime")

START_TIMEOUT = 10.0
_HOP_BY_HOP = {"CONTENT-LENGTH", "TRANSFER-ENCODING"}


class RealtimeThread:
    def __init__(self, settings: Settings, conninfo: str, draining: Callable[[], bool]) -> None:
        self.settings = settings
        self.conninfo = conninfo
        self.draining = draining
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._service: RealtimeService | None = None
        self._thread = threading.Thread(target=self._run, name="realtime", daemon=True)
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise RuntimeError("the realtime thread did not start")

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._service = RealtimeService(self.settings, self.conninfo, self.draining)
        self._service.start_dispatcher()
        self._ready.set()
        await self._stopping.wait()
        await self._service.stop()

    def hand_over(self, sock: socket.socket, request: Request) -> None:
        """Give the realtime loop a connection and its request, already parsed here; the
        caller closes its own copy of the socket. Safe from any thread."""
        assert self._loop is not None and self._service is not None
        own = sock.dup()
        head = rebuild(request)
        service = self._service
        self._loop.call_soon_threadsafe(self._spawn, service.adopt(own, head))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)  # the loop keeps only weak references
        task.add_done_callback(self._tasks.discard)

    def stop(self, timeout: float = 5.0) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout)


def rebuild(request: Request) -> bytes:
    """The request as bytes again, for the protocol engine; the body (already de-chunked)
    with its Content-Length."""
    body = request.body.read()
    request.body.close()
    lines = [f"{request.method} {request.target} {request.version}"]
    lines += [
        f"{name}: {value}"
        for name, value in request.headers
        if name not in _HOP_BY_HOP and not (name == "HOST" and request.authority)
    ]
    if request.authority:  # what a WSGI application gets as HTTP_HOST too
        lines.append(f"Host: {request.authority}")
    if body or request.method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
