"""An Odoo-style prefork HTTP server, as the benchmark's anchor: werkzeug's request handler
on a socket shared by forked workers, one request per connection (HTTP/1.0), which is how
Odoo's PreforkServer workers serve (odoo/service/server.py, WorkerHTTP).

Usage: python bench/odoo_style_server.py PORT WORKERS
"""

from __future__ import annotations

import os
import select
import socket
import sys

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from forked import run_forked
from hello import app


class NoBindServer(BaseWSGIServer):
    """werkzeug's server without its own socket, like Odoo's BaseWSGIServerNoBind."""

    def __init__(self, application):  # type: ignore[no-untyped-def]
        super().__init__("127.0.0.1", 0, application, handler=WSGIRequestHandler)
        self.socket.close()

    def server_activate(self) -> None:
        pass

    def log_request(self, *args: object) -> None:
        pass


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: object, **kwargs: object) -> None:
        pass


def worker(listener: socket.socket) -> None:
    server = NoBindServer(app)
    server.RequestHandlerClass = QuietHandler
    while True:
        readable, _, _ = select.select([listener], [], [], 1.0)
        if not readable:
            continue
        try:
            client, address = listener.accept()
        except BlockingIOError:
            continue
        client.setblocking(True)
        server.process_request(client, address)


def main() -> None:
    port, count = int(sys.argv[1]), int(sys.argv[2])
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(2048)
    listener.setblocking(False)
    run_forked(count, lambda: worker(listener))


if __name__ == "__main__":
    main()
