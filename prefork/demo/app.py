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
from prefork.cron import JobContext, cron

DEMO_JOB = "demo.heartbeat"

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
<tr><td>scheduled job</td><td id="cron"><code>{job}</code> (every minute): {job_state}</td></tr>
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
        job=DEMO_JOB,
        job_state=html.escape(_job_state(environ)),
    ).encode()
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                              ("Content-Length", str(len(page)))])
    return [page]


@cron(every="1m", name=DEMO_JOB)
def heartbeat(ctx: JobContext) -> None:
    """Runs every minute in a cron worker; the page shows its last run."""
    row = ctx.conn.execute("SELECT now()").fetchone()
    ctx.log.info("demo job ran at %s", row[0] if row else "?")


def _job_state(environ: dict[str, Any]) -> str:
    tx = environ.get("prefork.db")
    if tx is None:
        return "no database"
    try:
        row = tx.execute("SELECT last_run, last_status, next_run FROM prefork.cron_job "
                         "WHERE name = %s", (DEMO_JOB,)).fetchone()
    except Exception:  # SQLite (no cron) or the database away: the page still renders
        return "not available"
    if row is None:
        return "not registered yet (a cron worker registers it when it starts)"
    last_run, status, next_run = row
    if last_run is None:
        return f"not run yet; next run {next_run:%H:%M:%S} UTC"
    return f"last run {last_run:%H:%M:%S} UTC ({status}); next {next_run:%H:%M:%S} UTC"
