"""The two servers prefork's realtime process is measured against, doing the same work: take
messages from PostgreSQL NOTIFY and send each to the websocket clients subscribed to its
channel, with the same subscribe message and the same frames as prefork.

- `websockets`: the websockets library's asyncio server and its broadcast();
- `gevent`: one greenlet per connection on gevent's StreamServer, wsproto for the protocol
  and psycopg (cooperative under gevent) for LISTEN: the way Odoo's gevent process serves
  websockets. Lighter than Odoo itself, which queries the database for every socket.

Run: python bench/realtime_anchors.py websockets|gevent PORT DSN
A NOTIFY on channel `anchor` carries "<channel>\\n<frame item JSON>".
"""

from __future__ import annotations

import sys

NOTIFY_CHANNEL = "anchor"


def run_websockets(port: int, dsn: str) -> None:
    import asyncio
    import json
    from collections import defaultdict

    import psycopg
    import websockets
    from websockets.asyncio.server import ServerConnection, serve

    subscribers: dict[str, set[ServerConnection]] = defaultdict(set)

    async def handler(ws: ServerConnection) -> None:
        channels: list[str] = []
        try:
            async for text in ws:
                event = json.loads(text)
                if event.get("event_name") == "subscribe":
                    for channel in channels:
                        subscribers[channel].discard(ws)
                    channels = list(event["data"]["channels"])
                    for channel in channels:
                        subscribers[channel].add(ws)
        finally:
            for channel in channels:
                subscribers[channel].discard(ws)

    async def main() -> None:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        async with serve(
            handler,
            "127.0.0.1",
            port,
            compression=None,
            max_size=1 << 20,
            ping_interval=45,
            ping_timeout=15,
        ):
            async for notify in conn.notifies():
                channel, _, item = notify.payload.partition("\n")
                websockets.broadcast(subscribers.get(channel, ()), f"[{item}]")

    asyncio.run(main())


def run_gevent(port: int, dsn: str) -> None:
    from gevent import monkey

    monkey.patch_all()
    import json
    from collections import defaultdict
    from typing import Any

    import gevent
    import psycopg
    from gevent.server import StreamServer
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import (
        AcceptConnection,
        CloseConnection,
        Message,
        Ping,
        Request,
        TextMessage,
    )

    class Client:
        def __init__(self, sock: Any) -> None:
            self.sock = sock
            self.ws = WSConnection(ConnectionType.SERVER)
            self.channels: list[str] = []

        def send(self, event: Any) -> None:
            try:
                self.sock.sendall(self.ws.send(event))
            except OSError:
                pass

    subscribers: dict[str, set[Client]] = defaultdict(set)

    def handle(sock: Any, address: Any) -> None:
        client = Client(sock)
        try:
            while data := sock.recv(65536):
                client.ws.receive_data(data)
                for event in client.ws.events():
                    if isinstance(event, Request):
                        client.send(AcceptConnection())
                    elif isinstance(event, TextMessage):
                        subscribe(client, json.loads(event.data))
                    elif isinstance(event, Ping):
                        client.send(event.response())
                    elif isinstance(event, CloseConnection):
                        client.send(event.response())
                        return
        except OSError:
            pass
        finally:
            for channel in client.channels:
                subscribers[channel].discard(client)

    def subscribe(client: Client, event: dict[str, Any]) -> None:
        if event.get("event_name") != "subscribe":
            return
        for channel in client.channels:
            subscribers[channel].discard(client)
        client.channels = list(event["data"]["channels"])
        for channel in client.channels:
            subscribers[channel].add(client)

    def listen() -> None:
        conn = psycopg.connect(dsn, autocommit=True)
        conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        for notify in conn.notifies():
            channel, _, item = notify.payload.partition("\n")
            frame = Message(data=f"[{item}]")
            for client in list(subscribers.get(channel, ())):
                client.send(frame)

    server = StreamServer(("127.0.0.1", port), handle, backlog=4096)
    gevent.spawn(listen)
    server.serve_forever()


if __name__ == "__main__":
    kind, port, dsn = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    {"websockets": run_websockets, "gevent": run_gevent}[kind](port, dsn)
