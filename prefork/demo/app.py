"""A small page that shows prefork is serving: which process and thread answered, and how.

Later features (sessions, chat over the bus, cron, the CPU-limit report) add their parts here.
"""

from __future__ import annotations

import html
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from prefork import __version__

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>prefork demo</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 46rem; margin: 3rem auto; color: #222; }}
code {{ background: #f3f3f3; padding: 0 .25rem; }}
td {{ padding: .2rem 1rem .2rem 0; }}
</style></head><body>
<h1>prefork is running</h1>
<p>This is the built-in demo, served because no application was configured.
Serve your own WSGI application with <code>prefork run --app module:callable</code>.</p>
<table>
<tr><td>version</td><td>{version}</td></tr>
<tr><td>served by</td><td id="served-by">pid {pid}, thread {thread}</td></tr>
<tr><td>mode</td><td>{mode}</td></tr>
<tr><td>your address</td><td>{remote}</td></tr>
<tr><td>request</td><td><code>{method} {uri} {protocol}</code></td></tr>
</table>
</body></html>
"""


def application(environ: dict[str, Any],
                start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ["PATH_INFO"] not in ("/", "/index.html"):
        body = b"not found\n"
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8"),
                                         ("Content-Length", str(len(body)))])
        return [body]
    mode = "multi-processing" if environ["wsgi.multiprocess"] else "threaded"
    page = PAGE.format(
        version=__version__,
        pid=os.getpid(),
        thread=html.escape(threading.current_thread().name),
        mode=mode,
        remote=html.escape(environ.get("REMOTE_ADDR", "")),
        method=html.escape(environ["REQUEST_METHOD"]),
        uri=html.escape(environ.get("RAW_URI", "")),
        protocol=html.escape(environ["SERVER_PROTOCOL"]),
    ).encode()
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                              ("Content-Length", str(len(page)))])
    return [page]
