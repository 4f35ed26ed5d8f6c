"""What every session store does, and the one format they all keep: JSON, never pickle,
so that nothing read back from a store can run code."""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from typing import Any

from prefork.wsgi.unavailable import Unavailable

Found = tuple[dict[str, Any], float]  # (data, created)


class StoreUnavailable(Unavailable):
    """The store cannot be reached (Redis down): the request gets 503, the worker serves on."""


class Store(ABC):
    def __init__(self, idle: int, lifetime: int) -> None:
        self.idle = idle  # seconds without a request before a session expires (0: never)
        self.lifetime = lifetime  # seconds after its creation a session expires (0: never)

    @abstractmethod
    def load(self, sid: str) -> Found | None:
        """The session, its idle timer restarted; None when unknown or expired."""

    def peek(self, sid: str) -> Found | None:
        """The session without restarting its idle timer (the realtime process's check)."""
        return self.load(sid)

    @abstractmethod
    def save(self, sid: str, data: dict[str, Any], created: float) -> None: ...

    @abstractmethod
    def delete(self, sid: str) -> None: ...

    def collect(self) -> int:
        """Delete expired sessions the store does not expire by itself; how many."""
        return 0

    def too_old(self, created: float, now: float | None = None) -> bool:
        return bool(self.lifetime) and (now or time.time()) - created > self.lifetime

    def remaining(self, created: float) -> int:
        """Seconds the session may still live without a request (0: no limit)."""
        limits = [self.idle] if self.idle else []
        if self.lifetime:
            limits.append(max(1, int(created + self.lifetime - time.time())))
        return min(limits) if limits else 0


def encode(data: dict[str, Any], created: float) -> bytes:
    return json.dumps({"created": created, "data": data}, separators=(",", ":")).encode()


def decode(raw: bytes) -> Found | None:
    """None for anything that is not a session this server wrote."""
    try:
        payload = json.loads(raw)
        data, created = payload["data"], float(payload["created"])
    except (ValueError, TypeError, KeyError):
        return None
    return (data, created) if isinstance(data, dict) else None
