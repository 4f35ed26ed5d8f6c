"""A small load generator for tests: threads sending requests until told to stop.

Counts every request that got no valid response as a failure, so tests can assert "zero
failed requests" through reloads, upgrades and worker deaths.
"""

from __future__ import annotations

import http.client
import re
import threading
from collections import Counter
from dataclasses import dataclass, field

PID_RE = re.compile(rb'"pid": (\d+)')  # the serving process, in the test apps' JSON bodies


@dataclass
class LoadResult:
    ok: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    pids: set[int] = field(default_factory=set)


class Load:
    """`clients` threads; keep_alive reuses one connection per thread, else one per request."""

    def __init__(
        self,
        port: int,
        clients: int = 4,
        path: str = "/echo",
        keep_alive: bool = False,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.port = port
        self.path = path
        self.keep_alive = keep_alive
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> LoadResult:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        return self.result

    def _client(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                conn.request("GET", self.path)
                response = conn.getresponse()
                body = response.read()
                self._record(response.status == 200, body, "")
                if not self.keep_alive or response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                self._record(False, b"", type(exc).__name__)
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def _record(self, ok: bool, body: bytes, error: str) -> None:
        with self._lock:
            if ok:
                self.result.ok += 1
                pid = PID_RE.search(body)
                if pid:
                    self.result.pids.add(int(pid.group(1)))
            else:
                self.result.failed += 1
                self.result.errors[error or "bad status"] += 1
