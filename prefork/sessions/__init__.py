"""Sessions shared by every worker and host (docs/deployment.md, "Sessions").

    def app(environ, start_response):
        session = environ["prefork.session"]       # loaded on first use
        session["user"] = "ada"                      # saved because it changed
        session.rotate()                             # at sign-in: a new id, same data
        session.destroy()                            # at sign-out
        start_response(...)                          # changes after this are not kept

`session_store` says where they live: `file` (default, data_dir/sessions), a Redis URL, or
`memory` (threaded mode only).
"""

from __future__ import annotations

from prefork.sessions.session import Session
from prefork.sessions.stores import Store, StoreUnavailable, make_store

__all__ = ["Session", "Store", "StoreUnavailable", "make_store"]
