"""Sessions in Redis (redis-py): a key per session whose TTL is the idle timeout (capped by
what remains of the absolute lifetime), restarted by each load (GETEX, one round trip).
One connection pool per process, made after the fork. Redis down: StoreUnavailable (the
request gets 503); redis-py reconnects by itself when it is back."""

from __future__ import annotations

import os
from typing import Any

import redis as redis_lib

from prefork.sessions.stores.base import Found, Store, StoreUnavailable, decode, encode

KEY_PREFIX = "prefork:session:"
TIMEOUT = 2.0  # seconds for connecting and for each command


class RedisStore(Store):
    def __init__(self, url: str, idle: int, lifetime: int) -> None:
        super().__init__(idle, lifetime)
        self.url = url
        self._client: redis_lib.Redis | None = None
        self._pid = 0

    @property
    def client(self) -> redis_lib.Redis:
        if self._client is None or self._pid != os.getpid():  # never a pool from the parent
            self._client = redis_lib.Redis.from_url(
                self.url,
                socket_timeout=TIMEOUT,
                socket_connect_timeout=TIMEOUT,
                health_check_interval=30,
            )
            self._pid = os.getpid()
        return self._client

    def load(self, sid: str) -> Found | None:
        key = KEY_PREFIX + sid
        try:
            raw = self.client.getex(key, ex=self.idle) if self.idle else self.client.get(key)
        except redis_lib.RedisError as exc:
            raise StoreUnavailable(f"session store unavailable: Redis: {exc}") from None
        return self._check(sid, raw)

    def peek(self, sid: str) -> Found | None:
        try:
            raw = self.client.get(KEY_PREFIX + sid)
        except redis_lib.RedisError as exc:
            raise StoreUnavailable(f"session store unavailable: Redis: {exc}") from None
        return self._check(sid, raw)

    def _check(self, sid: str, raw: Any) -> Found | None:
        found = decode(raw) if raw is not None else None
        if found is not None and self.too_old(found[1]):
            self.delete(sid)
            return None
        return found

    def save(self, sid: str, data: dict[str, Any], created: float) -> None:
        ttl = self.remaining(created)
        try:
            self.client.set(KEY_PREFIX + sid, encode(data, created), ex=ttl or None)
        except redis_lib.RedisError as exc:
            raise StoreUnavailable(f"session store unavailable: Redis: {exc}") from None

    def delete(self, sid: str) -> None:
        try:
            self.client.delete(KEY_PREFIX + sid)
        except redis_lib.RedisError as exc:
            raise StoreUnavailable(f"session store unavailable: Redis: {exc}") from None
