"""One websocket client, speaking the protocol of Odoo 16+ bus clients.

The client sends `{"event_name": "subscribe", "data": {"channels": [...], "last": N}}`;
the server sends JSON arrays of `{"id": N, "message": {...}}`. Close codes are Odoo's:
1000 with reason OUTDATED_VERSION a browser's worker older than websocket_worker_version,
1001 server going away, 1008 origin refused, 1009 message over 1 MiB (enforced by the
protocol engine), 1013 rate limit exceeded, a client too slow to read what it is sent (more
than websocket_queue_limit bytes waiting for it), or its history unavailable (it retries
later and catches up), 4001 a session that was valid at the connection has expired, 4002
connection lifetime reached. Pings (websocket_ping_interval,
45 s) and their timeout (websocket_ping_timeout, 15 s, then 1011) are the protocol engine's.
A message that is not a well-formed event is logged and ignored (see protocol.py).

Each connection costs one task (its receive loop) and two timer handles; a writer task
exists only while frames are waiting to be sent.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from typing import Any
from urllib.parse import parse_qs

from prefork import metrics
from prefork.bus.store import Message
from prefork.config.settings import Settings
from prefork.db.errors import one_line
from prefork.quiet_log import QuietLog
from prefork.realtime import protocol
from prefork.realtime.auth import SESSION_CHECK, Anonymous, Gate, same_site
from prefork.realtime.hub import Hub, Subscriber
from prefork.realtime.protocol import Ignored, RateLimit
from prefork.sessions.stores import StoreUnavailable
from prefork.wsgi.unavailable import UNAVAILABLE_LOG_EVERY

log = logging.getLogger("prefork.realtime")

CLEAN, GOING_AWAY, POLICY, TRY_LATER = 1000, 1001, 1008, 1013
SESSION_EXPIRED, LIFETIME = 4001, 4002
MAX_QUEUED_FRAMES = 1000  # besides websocket_queue_limit: a deque entry costs ~60 bytes
LIFETIME_JITTER = 0.1

ASGISend = Any
ASGIReceive = Any


class Services:
    """What every connection of the process shares."""

    def __init__(
        self, hub: Hub, gate: Gate, history: Any, newest: Callable[[], int], settings: Settings
    ) -> None:
        self.hub = hub
        self.gate = gate
        self.history = history  # async (channels, last) -> list[Message]
        self.newest = newest  # the highest id delivered, -1 before the bus connected
        self.lifetime = settings.websocket_lifetime
        self.proxy_mode = settings.proxy_mode
        self.rate_burst = settings.websocket_rate_limit_burst
        self.rate_delay = settings.websocket_rate_limit_delay
        self.worker_version = settings.websocket_worker_version
        self.queue_limit = settings.websocket_queue_limit or None
        self.ignored = QuietLog(log)
        self.unavailable = QuietLog(log, UNAVAILABLE_LOG_EVERY)
        self.refused = QuietLog(log)
        self.slow = QuietLog(log)
        self.clients: set[Client] = set()

    def starting_point(self, last: int) -> int:
        """Odoo's `ir.websocket._subscribe`: a last id above the newest one the bus knows
        (a database restored from a backup) starts afresh, else its client would see
        nothing until the ids caught up."""
        newest = self.newest()
        return 0 if 0 <= newest < last else last


class Client:
    __slots__ = (
        "_closing",
        "_frames",
        "_headers",
        "_lifetime",
        "_queued",
        "_rate",
        "_send",
        "_session_check",
        "_writer",
        "identity",
        "services",
        "subscriber",
    )

    def __init__(
        self, services: Services, send: ASGISend, identity: Any, headers: Mapping[str, str]
    ) -> None:
        self.services = services
        self.identity = identity
        self._headers = headers
        self._send = send
        self.subscriber = Subscriber(self._queue)
        self._frames: deque[str] = deque()
        self._queued = 0  # bytes waiting for the client: the frame being sent, then _frames
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._rate = RateLimit(services.rate_burst, services.rate_delay)
        loop = asyncio.get_running_loop()
        lifetime = services.lifetime
        self._lifetime = (
            loop.call_later(
                lifetime * random.uniform(1 - LIFETIME_JITTER, 1 + LIFETIME_JITTER),
                self.close,
                LIFETIME,
            )
            if lifetime
            else None
        )
        self._session_check = (
            None
            if isinstance(identity, Anonymous)
            else loop.call_later(SESSION_CHECK, self._check_session)
        )

    # -- incoming ----------------------------------------------------------------------------

    async def on_message(self, text: str | None) -> None:
        if not self._rate.allow(time.monotonic()):
            self.close(TRY_LATER)
            return
        try:
            name, data = protocol.parse_event(text)
            if not await self._session_valid():
                return
            if name == "subscribe":
                await self._subscribe(*protocol.parse_subscription(data))
            else:  # Odoo ignores events it has no handler for (update_presence: presence)
                log.debug("websocket: ignoring event %r", name)
        except Ignored as ignored:
            self.services.ignored.warning("websocket: ignored a client message: %s", ignored)
        except StoreUnavailable as exc:
            self.services.unavailable.warning("websocket: %s", exc)
        except Exception:  # a hook's bug: Odoo logs it and keeps the connection too
            log.exception("websocket: a client message failed in a bus hook")

    async def _subscribe(self, channels: list[str], last: int) -> None:
        allowed = await self.services.gate.allowed(self.identity, channels)
        last = self.services.starting_point(last)
        self.services.hub.join(self.subscriber, allowed, last)
        try:
            history = await self.services.history(allowed, last)
        except Exception as exc:
            # Closed rather than served without what it missed: the client reconnects later
            # (Odoo's worker backs off on 1013) with the same last id and loses nothing.
            self.services.unavailable.warning(
                "websocket: catch-up unavailable, client asked to retry: %s", one_line(exc)
            )
            self.close(TRY_LATER, "catch-up unavailable, retry later")
            return
        self.subscriber.release(history)

    async def _session_valid(self) -> bool:
        """False (and closing with 4001) when the session this client connected with is
        gone; an anonymous client has none to lose."""
        if isinstance(self.identity, Anonymous):
            return True
        try:
            identity = await self.services.gate.identify(self._headers)
        except StoreUnavailable:
            return True  # an outage of the store does not end sessions
        if identity is None:
            self.close(SESSION_EXPIRED)
            return False
        return True

    def _check_session(self) -> None:
        async def check() -> None:
            if await self._session_valid() and not self._closing:
                loop = asyncio.get_running_loop()
                self._session_check = loop.call_later(SESSION_CHECK, self._check_session)

        _spawn(check())

    # -- outgoing ----------------------------------------------------------------------------

    def _queue(self, messages: list[Message]) -> None:
        """Send a frame now, without a task, unless the client's socket is full: then the
        frames wait behind the blocked send (a fan-out to 1,000 clients must not cost
        1,000 tasks)."""
        if self._closing:
            return
        frame = "[" + ",".join(m.item for m in messages) + "]"
        if self._writer is not None:
            self._queued += sys.getsizeof(frame)
            limit = self.services.queue_limit
            if len(self._frames) >= MAX_QUEUED_FRAMES or (limit and self._queued > limit):
                self.services.slow.warning(
                    "websocket: closed a client too slow to read (1013): %d frame(s), %d "
                    "bytes waiting for it (websocket_queue_limit)",
                    len(self._frames),
                    self._queued,
                )
                self.close(TRY_LATER)  # it reconnects with its last id and catches up
                return
            self._frames.append(frame)
            return
        blocked = send_eagerly(self._send({"type": "websocket.send", "text": frame}))
        if blocked is not None:
            self._queued = sys.getsizeof(frame)
            self._writer = asyncio.ensure_future(self._write(blocked, self._queued))

    async def _write(self, blocked: Coroutine[Any, Any, None], size: int) -> None:
        """Send what waits, one frame at a time. Sizes are the frames' memory
        (sys.getsizeof: 1, 2 or 4 bytes a character, as CPython keeps the text)."""
        try:
            await blocked
            while self._frames and not self._closing:
                self._queued -= size
                frame = self._frames.popleft()
                size = sys.getsizeof(frame)
                await self._send({"type": "websocket.send", "text": frame})
        except Exception:  # the client went away; the receive loop ends the connection
            self._frames.clear()
        finally:
            self._queued = 0
            self._writer = None

    def close(self, code: int, reason: str = "") -> None:
        if self._closing:
            return
        self._closing = True
        self._frames.clear()
        _spawn(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        try:
            await self._send({"type": "websocket.close", "code": code, "reason": reason})
        except Exception:
            pass  # already gone

    def end(self) -> None:
        """The connection is over: leave the hub, stop the timers."""
        self._closing = True
        self.services.hub.leave(self.subscriber)
        for handle in (self._lifetime, self._session_check):
            if handle is not None:
                handle.cancel()
        if self._writer is not None:
            self._writer.cancel()


async def serve(
    services: Services, scope: Mapping[str, Any], receive: ASGIReceive, send: ASGISend
) -> None:
    """The ASGI websocket session."""
    if (await receive())["type"] != "websocket.connect":
        return
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    if not same_site(headers, services.proxy_mode):
        services.refused.warning(
            "websocket refused: origin %r does not match host %r",
            headers.get("origin"),
            headers.get("host"),
        )
        await send({"type": "websocket.close", "code": POLICY})  # HTTP 403 before accept
        return
    try:
        identity = await services.gate.connect(headers)
    except StoreUnavailable as exc:
        services.unavailable.warning("websocket: %s", exc)
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": TRY_LATER})
        return
    await send({"type": "websocket.accept"})
    client = Client(services, send, identity, headers)
    if _outdated(services, scope, headers):
        client.close(CLEAN, protocol.OUTDATED_VERSION)
    services.clients.add(client)
    counters = metrics.current()
    if counters is not None:
        counters.websockets.inc()
    try:
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                return
            text = event.get("text")
            await client.on_message(text if text is not None else _decode(event.get("bytes")))
    finally:
        client.end()
        services.clients.discard(client)
        if counters is not None:
            counters.websockets.dec()


def _outdated(services: Services, scope: Mapping[str, Any], headers: Mapping[str, str]) -> bool:
    """Odoo 17+ `WebsocketConnectionHandler._serve_forever`: a browser whose worker's
    ?version= is not the current one is closed with 1000 and OUTDATED_VERSION, which its
    worker obeys by not reconnecting (any other code would make it retry at once, a
    successful open resetting its back-off). Odoo asks only clients whose User-Agent
    parses as a browser's (devices send none or their own); every browser's starts with
    Mozilla/."""
    if not services.worker_version or "Mozilla/" not in headers.get("user-agent", ""):
        return False
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    version: str = query.get("version", [""])[0]
    return version != services.worker_version


def send_eagerly(send: Coroutine[Any, Any, None]) -> Coroutine[Any, Any, None] | None:
    """Run an ASGI send until it completes or blocks: uvicorn's websocket send writes to the
    transport without suspending unless the client stopped reading. None when it completed
    (or failed: the client is gone and its receive loop ends it); else a coroutine that
    finishes it, to be awaited in a task."""
    try:
        waiting_on = send.send(None)
    except StopIteration:
        return None
    except Exception:
        return None
    return _finish(send, waiting_on)


async def _finish(send: Coroutine[Any, Any, None], waiting_on: Any) -> None:
    """Resume a coroutine started by send_eagerly, as its own task would have."""
    try:
        while True:
            try:
                if waiting_on is None:  # a bare yield (sleep(0)): let the loop run once
                    await asyncio.sleep(0)
                else:
                    # What a task does with a future its coroutine yields: the flag says
                    # "yielded by await", and a second await of it expects it cleared.
                    waiting_on._asyncio_future_blocking = False
                    await waiting_on
            except asyncio.CancelledError:
                if waiting_on is None or not waiting_on.cancelled():
                    raise  # this task is being cancelled, not what the send waited on
            except Exception:
                pass  # the send sees the same outcome when resumed
            try:
                waiting_on = send.send(None)
            except StopIteration:
                return
    finally:
        send.close()


_background: set[asyncio.Task[None]] = set()  # the loop keeps only weak references


def _spawn(coroutine: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(coroutine)
    _background.add(task)
    task.add_done_callback(_background.discard)


def _decode(raw: bytes | None) -> str | None:
    try:
        return raw.decode() if raw is not None else None
    except UnicodeDecodeError:
        return None
