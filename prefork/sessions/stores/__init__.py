"""Where sessions live: `session_store = file` (default), `redis://host:port/db`, `memory`."""

from __future__ import annotations

import os

from prefork.config import Settings
from prefork.sessions.stores.base import Store, StoreUnavailable

__all__ = ["Store", "StoreUnavailable", "make_store"]


def make_store(settings: Settings) -> Store:
    kind = settings.session_store
    idle, lifetime = settings.session_idle_timeout, settings.session_max_lifetime
    if kind == "memory":
        from prefork.sessions.stores.memory import MemoryStore

        return MemoryStore(idle, lifetime)
    if kind == "file":
        from prefork.sessions.stores.file import FileStore

        return FileStore(os.path.join(settings.data_dir, "sessions"), idle, lifetime)
    from prefork.sessions.stores.redis import RedisStore

    return RedisStore(kind, idle, lifetime)
