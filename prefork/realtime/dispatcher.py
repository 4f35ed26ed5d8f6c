"""The realtime process's one link to the bus table.

It LISTENs on one connection and works on a second: gives committed messages their
delivery ids (see prefork/bus/store.py), reads every id above the last one it delivered and
hands them to the hub. When the database goes away it keeps retrying with a growing delay,
then catches up from the last id it delivered, so subscribers lose nothing. A poll every
POLL_INTERVAL covers a notification lost with a connection. History for subscribers comes
from a small pool (capacity.catchup_pool_size): when many clients reconnect at once they
queue for it, up to CATCHUP_WAIT seconds each, instead of taking the database's connections
(such a storm once left every host of a cluster without any).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from prefork import metrics
from prefork.bus import store
from prefork.bus.store import Message
from prefork.db import roles
from prefork.db.errors import one_line
from prefork.db.pool import idle_step
from prefork.realtime.hub import Hub

log = logging.getLogger("prefork.realtime")
Chore = Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]

POLL_INTERVAL = 5.0
RECONNECT_MIN, RECONNECT_MAX = 0.2, 5.0
COLLECT_INTERVAL = 60.0
FRESH_WINDOW = 50.0  # a client with no last id gets this many seconds of history (Odoo's)
CATCHUP_WAIT = 30.0  # seconds a catching-up client waits for a connection of the pool
BOUND = 30.0  # seconds any of the process's statements or transactions takes at most


class Dispatcher:
    def __init__(
        self, conninfo: str, hub: Hub, retention: int, maxconn: int, chores: Sequence[Chore] = ()
    ) -> None:
        """`chores`: called on the work connection at every turn of the loop (at least
        every POLL_INTERVAL); each decides whether it is time to act."""
        self.conninfo = conninfo
        self.hub = hub
        self.retention = retention
        self.chores = chores
        self.last = -1  # the highest id delivered; -1 until the first connection
        self.connected = False
        self._wake = asyncio.Event()
        self._written = True  # sequence at the first connection: messages may be waiting
        self._next_collect = 0.0
        self.pool = AsyncConnectionPool(
            roles.role_conninfo(conninfo, roles.REALTIME),
            min_size=0,
            max_size=maxconn,
            open=False,
            kwargs={"autocommit": True},
            timeout=CATCHUP_WAIT,
            configure=lambda conn: roles.prepare_async(conn, BOUND),
            max_idle=idle_step(maxconn),
        )

    async def run(self) -> None:
        await self.pool.open(wait=False)
        delay = RECONNECT_MIN
        while True:
            try:
                await self._session()
            except (psycopg.Error, OSError) as exc:
                if self.connected or delay == RECONNECT_MIN:
                    log.warning("bus: database connection lost, retrying: %s", one_line(exc))
                self.connected = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX)
            else:
                delay = RECONNECT_MIN

    async def _session(self) -> None:
        listen = await roles.connect_async(self.conninfo, roles.REALTIME, autocommit=True)
        try:
            work = await roles.connect_async(self.conninfo, roles.REALTIME, BOUND, autocommit=True)
        except BaseException:
            await listen.close()
            raise
        try:
            await listen.execute(f"LISTEN {store.WRITTEN}")
            await listen.execute(f"LISTEN {store.SEQUENCED}")
            if self.last < 0:
                self.last = await _scalar(work, store.LAST_ID)
            self.connected = True
            log.info("bus: listening (last id %d)", self.last)
            listener = asyncio.ensure_future(self._listen(listen))
            try:
                await self._work(work, listener)
            finally:
                listener.cancel()
        finally:
            await listen.close()
            await work.close()

    async def _listen(self, listen: psycopg.AsyncConnection[Any]) -> None:
        try:
            async for notify in listen.notifies():
                if notify.channel == store.WRITTEN:
                    self._written = True
                self._wake.set()
        finally:
            self._wake.set()  # the work loop must see the lost connection at once

    async def _work(
        self, work: psycopg.AsyncConnection[Any], listener: asyncio.Future[None]
    ) -> None:
        while True:
            if listener.done():
                listener.result()  # raises the connection's error
                raise psycopg.OperationalError("the LISTEN connection ended")
            if self._written:
                self._written = False
                await self._sequence(work)
            await self._fetch(work)
            await self._collect(work)
            for chore in self.chores:
                await chore(work)
            try:
                await asyncio.wait_for(self._wake.wait(), POLL_INTERVAL)
            except TimeoutError:
                self._written = True  # a poll: also order what a lost NOTIFY announced
            self._wake.clear()

    async def _sequence(self, work: psycopg.AsyncConnection[Any]) -> None:
        async with work.transaction():
            await work.execute("SELECT pg_advisory_xact_lock(%s)", (store.SEQUENCE_LOCK,))
            cursor = await work.execute(store.SEQUENCE)
            ids = [row[0] for row in await cursor.fetchall()]
            if ids:
                await work.execute(store.ANNOUNCE, (store.SEQUENCED, str(max(ids))))

    async def _fetch(self, work: psycopg.AsyncConnection[Any]) -> None:
        while True:
            cursor = await work.execute(store.FETCH, (self.last, store.FETCH_BATCH))
            messages = store.rows_to_messages(await cursor.fetchall())
            if not messages:
                return
            self.last = messages[-1].id
            self.hub.publish(messages)
            counters = metrics.current()
            if counters is not None:
                counters.bus_messages.inc(len(messages))
            if len(messages) < store.FETCH_BATCH:
                return

    async def _collect(self, work: psycopg.AsyncConnection[Any]) -> None:
        now = time.monotonic()
        if now < self._next_collect or not self.retention:
            return
        self._next_collect = now + COLLECT_INTERVAL
        cursor = await work.execute(store.COLLECT, (self.retention,))
        if cursor.rowcount:
            log.debug(
                "bus: collected %d message(s) older than %ds", cursor.rowcount, self.retention
            )

    async def history(self, channels: list[str], last: int) -> list[Message]:
        """Stored messages above `last` on these channels (a client catching up)."""
        if not channels or 0 <= self.last <= last:
            return []  # the client has everything the dispatcher delivered
        window = FRESH_WINDOW if last <= 0 else (self.retention or 10**9)
        messages: list[Message] = []
        async with self.pool.connection() as conn:
            while True:
                cursor = await conn.execute(
                    store.REPLAY, (last, channels, window, store.FETCH_BATCH)
                )
                batch = store.rows_to_messages(await cursor.fetchall())
                messages.extend(batch)
                if len(batch) < store.FETCH_BATCH:
                    return messages
                last = batch[-1].id

    async def close(self) -> None:
        await self.pool.close()


async def _scalar(conn: psycopg.AsyncConnection[Any], query: str) -> int:
    cursor = await conn.execute(query)
    row = await cursor.fetchone()
    return int(row[0]) if row else 0
