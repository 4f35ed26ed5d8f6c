"""prefork's HTTP engine in one process and one thread: the event loop dispatching inline.

This is how a multi-processing HTTP worker serves; the benchmark compares it with a gunicorn
sync worker. Usage: python bench/engine_server.py PORT
"""

from __future__ import annotations

import sys
import tempfile

from prefork.config import Settings
from prefork.sockets import listen
from prefork.workers.engine import make_handler, make_loop
from prefork.wsgi.handler import WSGIHandler

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from hello import app


def main() -> None:
    port = int(sys.argv[1])
    settings = Settings(http_port=port, access_log=False, data_dir=tempfile.mkdtemp())
    handler: WSGIHandler
    loop = make_loop(settings, lambda conn, request: handler.serve(conn, request), inline=True)
    handler = make_handler(settings, app, loop, multiprocess=False, draining=lambda: False)
    loop.add_listener(listen("127.0.0.1", port))
    print("ready", flush=True)
    while True:
        loop.run_once(1.0)


if __name__ == "__main__":
    main()
