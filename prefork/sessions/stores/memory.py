"""Sessions in this process's memory: threaded mode only (each worker process would have
its own, and users would lose their session from one request to the next)."""

from __future__ import annotations

import threading
import time
from typing import Any

from prefork.sessions.stores.base import Found, Store, decode, encode


class MemoryStore(Store):
    def __init__(self, idle: int, lifetime: int) -> None:
        super().__init__(idle, lifetime)
        self._lock = threading.Lock()
        self._sessions: dict[str, tuple[bytes, float]] = {}  # sid -> (payload, last use)

    def load(self, sid: str) -> Found | None:
        return self._read(sid, touch=True)

    def peek(self, sid: str) -> Found | None:
        return self._read(sid, touch=False)

    def _read(self, sid: str, touch: bool) -> Found | None:
        now = time.time()
        with self._lock:
            entry = self._sessions.get(sid)
            if entry is None:
                return None
            found = decode(entry[0])
            if (
                found is None
                or (self.idle and now - entry[1] > self.idle)
                or self.too_old(found[1], now)
            ):
                del self._sessions[sid]
                return None
            if touch:
                self._sessions[sid] = (entry[0], now)
            return found

    def save(self, sid: str, data: dict[str, Any], created: float) -> None:
        with self._lock:
            self._sessions[sid] = (encode(data, created), time.time())

    def delete(self, sid: str) -> None:
        with self._lock:
            self._sessions.pop(sid, None)

    def collect(self) -> int:
        now = time.time()
        with self._lock:
            stale = [
                sid
                for sid, (_, used) in self._sessions.items()
                if self.idle and now - used > self.idle
            ]
            for sid in stale:
                del self._sessions[sid]
        return len(stale)
