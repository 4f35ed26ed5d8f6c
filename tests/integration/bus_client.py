"""A bus client that reconnects the way Odoo 16-18's websocket worker does, written from its
observable protocol: it subscribes on every open, resets its back-off on every successful
open, grows the delay by half after every failure, and stops for good on a clean close
(1000). A server that accepts a connection and then closes it at once therefore makes such
a client reconnect every `initial_delay` seconds forever."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import connect


class OdooLikeWorker:
    def __init__(
        self, url: str, channels: list[Any], cookie: str = "", initial_delay: float = 0.2
    ) -> None:
        self.url, self.channels, self.cookie = url, channels, cookie
        self.initial_delay = initial_delay
        self.opened = 0  # successful opens
        self.closes: list[tuple[int, str]] = []  # (code, reason) the server closed with
        self.received: list[dict[str, Any]] = []
        self.last = 0
        self._ws: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> OdooLikeWorker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        delay = self.initial_delay
        while not self._stop.is_set():
            try:
                headers = {"Cookie": self.cookie} if self.cookie else {}
                with connect(
                    self.url,
                    open_timeout=5,
                    additional_headers=headers,
                    user_agent_header="OdooLikeWorker/1",
                ) as ws:
                    self.opened += 1
                    delay = self.initial_delay  # the worker's back-off reset on open
                    self._ws = ws
                    self.subscribe()
                    if self._receive(ws):
                        return
            except (OSError, InvalidHandshake):
                pass
            self._stop.wait(delay)
            delay *= 1.5

    def subscribe(self) -> None:
        """What the worker sends on every open, and again when its channels change."""
        self._ws.send(
            json.dumps(
                {"event_name": "subscribe", "data": {"channels": self.channels, "last": self.last}}
            )
        )

    def _receive(self, ws: Any) -> bool:
        """Read until the connection ends; True when the worker stops (a clean close)."""
        while not self._stop.is_set():
            try:
                frame = ws.recv(timeout=0.1)
            except TimeoutError:
                continue
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else 1006
                self.closes.append((code, closed.rcvd.reason if closed.rcvd else ""))
                return code == 1000
            for item in json.loads(frame):
                self.last = max(self.last, item["id"])
                self.received.append(item)
        ws.close()
        return True

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"never happened; opens {self.opened}, "
                    f"closes {self.closes}, received {self.received}"
                )
            time.sleep(0.05)
