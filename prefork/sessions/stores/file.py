"""Sessions as files under data_dir/sessions, sharded by the first characters of the id.

A write goes to a temporary file in the session's directory and is renamed over the old
one: a reader sees the old session or the new one, never half of one, whatever the number
of workers writing. The file's modification time is the last request's: a request that
does not change the session refreshes it at most every TOUCH_INTERVAL seconds, and the
collect() of the hourly cron job deletes files idle for longer than `session_idle_timeout`.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

from prefork.datadir import private_dir
from prefork.sessions.stores.base import Found, Store, decode, encode

TOUCH_INTERVAL = 60.0
TEMP_PREFIX = ".tmp-"
STALE_TEMP = 3600.0  # a temporary file this old was left by a killed writer


class FileStore(Store):
    def __init__(self, root: str, idle: int, lifetime: int) -> None:
        super().__init__(idle, lifetime)
        self.root = root

    def _path(self, sid: str) -> str:
        return os.path.join(self.root, sid[:2], sid[2:4], sid + ".json")

    def load(self, sid: str) -> Found | None:
        return self._read(sid, touch=True)

    def peek(self, sid: str) -> Found | None:
        return self._read(sid, touch=False)

    def _read(self, sid: str, touch: bool) -> Found | None:
        path = self._path(sid)
        try:
            with open(path, "rb") as f:
                mtime = os.fstat(f.fileno()).st_mtime
                found = decode(f.read())
        except FileNotFoundError:
            return None
        now = time.time()
        if found is None or (self.idle and now - mtime > self.idle) or self.too_old(found[1]):
            self.delete(sid)
            return None
        if touch and now - mtime > TOUCH_INTERVAL:
            try:
                os.utime(path)
            except FileNotFoundError:  # deleted meanwhile (sign-out in another request)
                return None
        return found

    def save(self, sid: str, data: dict[str, Any], created: float) -> None:
        path = self._path(sid)
        directory = os.path.dirname(path)
        try:
            fd, temp = tempfile.mkstemp(dir=directory, prefix=TEMP_PREFIX)
        except FileNotFoundError:  # the shard's first session
            private_dir(directory)
            fd, temp = tempfile.mkstemp(dir=directory, prefix=TEMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(encode(data, created))
            os.replace(temp, path)
        except BaseException:
            os.unlink(temp)
            raise

    def delete(self, sid: str) -> None:
        try:
            os.unlink(self._path(sid))
        except FileNotFoundError:
            pass

    def collect(self) -> int:
        now, removed = time.time(), 0
        for directory, _, names in os.walk(self.root):
            for name in names:
                path = os.path.join(directory, name)
                try:
                    if self._expired(name, now - os.stat(path).st_mtime):
                        os.unlink(path)
                        removed += 1
                except FileNotFoundError:
                    continue
        return removed

    def _expired(self, name: str, age: float) -> bool:
        if name.startswith(TEMP_PREFIX):
            return age > STALE_TEMP
        return name.endswith(".json") and bool(self.idle) and age > self.idle
