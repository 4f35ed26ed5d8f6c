"""The session a request sees: a dict-like object, loaded from the store on first use,
saved by the middleware only when it was modified."""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

from prefork.sessions.signing import new_id

# Finds the request's session: (id, data, created), or None for a new one.
Loader = Callable[[], "tuple[str, dict[str, Any], float] | None"]


class Session(MutableMapping[str, Any]):
    """environ["prefork.session"]. Values must be JSON-serialisable.

    `rotate()` gives the session a new id and keeps its data: call it when a user signs
    in, so that an id planted before the sign-in (session fixation) is worth nothing.
    `destroy()` deletes it from the store and expires the cookie.
    """

    def __init__(self, loader: Loader, now: float) -> None:
        self.sid: str | None = None
        self._loader = loader
        self._data: dict[str, Any] | None = None
        self.created = now
        self.new = True
        self.modified = False
        self.destroyed = False
        self.replaced: str | None = None  # an id given up by rotate(), to delete
        self.on_load: Callable[[], None] | None = None  # told once, when first touched

    # -- loading ----------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._data is not None

    def _items(self) -> dict[str, Any]:
        if self._data is None:
            found = self._loader()
            if found is None:  # no, a forged, an unknown or an expired cookie: a new session,
                self._data = {}  # and never the id the client sent
            else:
                self.sid, self._data, self.created = found
                self.new = False
            if self.on_load is not None:
                self.on_load()
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
