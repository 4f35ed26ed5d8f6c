"""The session a request sees: a dict-like object, loaded from the store on first use,
saved by the middleware only when it was modified."""

from __future__ import annotations

import time
from collections.abc import Iterator, MutableMapping
from typing import Any

from prefork.sessions.signing import new_id

# What a store holds for a session: (id, data, created).
Found = tuple[str, dict[str, Any], float]


class Session(MutableMapping[str, Any]):
    """environ["prefork.session"]. Values must be JSON-serialisable.

    `rotate()` gives the session a new id and keeps its data: call it when a user signs
    in, so that an id planted before the sign-in (session fixation) is worth nothing.
    `destroy()` deletes it from the store and expires the cookie.

    Every request gets one, and most never touch it: the state lives in class defaults, so
    making one sets no attribute, and a subclass that binds it to a request (see binder.py)
    overrides `_find` and `_touched`.
    """

    sid: str | None = None
    _data: dict[str, Any] | None = None
    created = 0.0
    new = True
    modified = False
    destroyed = False
    replaced: str | None = None  # an id given up by rotate(), to delete

    def _find(self) -> Found | None:
        """The stored session this one continues, or None for a new one."""
        return None

    def _touched(self) -> None:
        """Told once, when the application first uses the session."""

    # -- loading ----------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._data is not None

    def _items(self) -> dict[str, Any]:
        if self._data is None:
            found = self._find()
            if found is None:  # no, a forged, an unknown or an expired cookie: a new session,
                self._data = {}  # and never the id the client sent
                self.created = time.time()
            else:
                self.sid, self._data, self.created = found
                self.new = False
            self._touched()
        return self._data

    # -- the mapping ------------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        return self._items()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._items()[key] = value
        self.modified = True

    def __delitem__(self, key: str) -> None:
        del self._items()[key]
        self.modified = True

    def __iter__(self) -> Iterator[str]:
        return iter(self._items())

    def __len__(self) -> int:
        return len(self._items())

    def data(self) -> dict[str, Any]:
        return dict(self._items())

    # -- lifecycle --------------------------------------------------------------------------

    def rotate(self) -> None:
        items = self._items()
        if self.sid is not None and not self.new:
            self.replaced = self.sid
        self.sid, self._data = new_id(), items
        self.new = True
        self.modified = True

    def destroy(self) -> None:
        self._items().clear()
        self.destroyed = True
        self.modified = False

    def ensure_id(self) -> str:
        if self.sid is None:
            self.sid = new_id()
        return self.sid
