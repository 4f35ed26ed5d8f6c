"""A small page that shows prefork is serving: which process and thread answered, and how,
the session (sign in: the name stays whichever worker serves the next request), the last run
of a scheduled job, a live chat (a message is posted to an HTTP worker, published on the bus
in the request's transaction, and delivered to every open page through the realtime
process; the scheduled job posts the time to it every minute from a cron worker), and a
slow report that `limit_time_cpu` stops (prefork/demo/report.py).
"""

from __future__ import annotations

import html
import json
import os
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from prefork import __version__, bus
from prefork.cron import JobContext, cron
from prefork.demo import report

DEMO_JOB = "demo.heartbeat"
CHAT_CHANNEL = "demo.chat"
MAX_NAME, MAX_TEXT = 40, 500

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>prefork demo</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 46rem; margin: 3rem auto; color: #222; }}
code {{ background: #f3f3f3; padding: 0 .25rem; }}
td {{ padding: .2rem 1rem .2rem 0; }}
#chat-log {{ border: 1px solid #ccc; height: 14rem; overflow-y: auto; padding: .5rem;
             margin: .5rem 0; }}
#chat-log p {{ margin: .2rem 0; }}
#chat-form input {{ font: inherit; padding: .25rem; }}
#chat-text {{ width: 60%; }}
.via {{ color: #888; font-size: .8em; }}
#chat-log p.cron {{ color: #555; }}
#report-result {{ white-space: pre-wrap; }}
</style></head><body>
<h1>prefork is running</h1>
<p>This is the built-in demo, served because no application was configured.
Serve your own WSGI application with <code>prefork run --app module:callable</code>.</p>
<table>
<tr><td>version</td><td>{version}</td></tr>
<tr><td>served by</td><td id="served-by">pid {pid}, thread {thread}</td></tr>
<tr><td>session</td><td id="signed-in">{signed_in}</td></tr>
<tr><td>mode</td><td>{mode}</td></tr>
<tr><td>your address</td><td>{remote}</td></tr>
<tr><td>request</td><td><code>{method} {uri} {protocol}</code></td></tr>
<tr><td>scheduled job</td><td id="cron"><code>{job}</code> (every minute): {job_state};
it posts the time to the chat</td></tr>
</table>
<form method="post" action="{sign_action}" id="sign-form">{sign_form}</form>
<h2>Live chat</h2>
<p>Open this page in two tabs: what one posts, the other shows at once. Status:
<span id="chat-status">connecting</span></p>
<div id="chat-log"></div>
<form id="chat-form">
<input id="chat-name" placeholder="name" maxlength="{max_name}" size="10" required
 value="{user}">
<input id="chat-text" placeholder="message" maxlength="{max_text}" required>
<button>Send</button>
</form>
<h2>Slow report</h2>
<p id="report-explained">{report_explained}</p>
<p><button id="report-button">Run the slow report</button></p>
<p id="report-result"></p>
<p id="report-worker"></p>
<script>
(function () {{
  const port = {realtime_port} || location.port;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = scheme + "://" + location.hostname + (port ? ":" + port : "") + "/websocket";
  const log = document.getElementById("chat-log");
  const status = document.getElementById("chat-status");
  let last = 0, delay = 500;
  function show(item) {{
    const p = document.createElement("p");
    const who = document.createElement("b");
    who.textContent = item.message.name + ": ";
    const via = document.createElement("span");
    via.className = "via";
    if (item.message.via) p.className = "cron";
    via.textContent = " (posted " + (item.message.via ? "by " + item.message.via
                                                      : "through http") +
                      " pid " + item.message.pid + ")";
    p.append(who, document.createTextNode(item.message.text), via);
    log.append(p);
    log.scrollTop = log.scrollHeight;
  }}
  function connect() {{
    const ws = new WebSocket(url);
    ws.onopen = () => {{
      status.textContent = "connected";
      delay = 500;
      ws.send(JSON.stringify({{event_name: "subscribe",
                               data: {{channels: ["{channel}"], last: last}}}}));
    }};
    ws.onmessage = (event) => {{
      for (const item of JSON.parse(event.data)) {{
        if (item.id > last) {{ last = item.id; show(item); }}
      }}
    }};
    ws.onclose = () => {{
      status.textContent = "reconnecting";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    }};
  }}
  connect();
  document.getElementById("chat-form").addEventListener("submit", async (event) => {{
    event.preventDefault();
    const text = document.getElementById("chat-text");
    const name = document.getElementById("chat-name").value;
    const response = await fetch("/chat", {{method: "POST",
      headers: {{"Content-Type": "application/json"}},
      body: JSON.stringify({{name: name, text: text.value}})}});
    if (response.ok) text.value = "";
    else status.textContent = "send failed: " + response.status;
  }});
}})();
(function () {{
  const button = document.getElementById("report-button");
  const result = document.getElementById("report-result");
  const next = document.getElementById("report-worker");
  function readable(response, body) {{
    const type = response.headers.get("Content-Type") || "";
    if (!type.startsWith("text/html")) return body.trim();
    return new DOMParser().parseFromString(body, "text/html").body.textContent.trim();
  }}
  async function run() {{
    // Where a limit stops the report, the worker answers with the limit's error page.
    try {{
      const response = await fetch("/report", {{method: "POST", cache: "no-store"}});
      const body = await response.text();
      return "HTTP " + response.status + " " + response.statusText + "\\n" +
        readable(response, body);
    }} catch (error) {{
      return "no response (" + error.message + ")";
    }}
  }}
  button.addEventListener("click", async () => {{
    button.disabled = true;
    next.textContent = "";
    result.textContent = "running since " + new Date().toLocaleTimeString() + "...";
    const started = performance.now();
    const shown = await run();
    result.textContent = "after " + ((performance.now() - started) / 1000).toFixed(1) +
      " s: " + shown;
    try {{
      const served = await (await fetch("/worker", {{cache: "no-store"}})).json();
      next.textContent = "The next request was served by pid " + served.pid +
        ", a process started " + served.age + " s ago.";
    }} catch (error) {{
      next.textContent = "The next request failed too: " + error.message;
    }}
    button.disabled = false;
  }});
}})();
</script>
</body></html>
"""


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if environ["REQUEST_METHOD"] == "POST" and path in _ACTIONS:
        return _ACTIONS[path](environ, start_response)
    if path == "/worker":
        return report.worker(environ, start_response)
    if path not in ("/", "/index.html"):
        return _plain(start_response, "404 Not Found", "not found\n")
    mode = "multi-processing" if environ["wsgi.multiprocess"] else "threaded"
    user = str(environ["prefork.session"].get("user", ""))
    page = PAGE.format(
        signed_in=f"signed in as <b>{html.escape(user)}</b>" if user else "not signed in",
        sign_action="/logout" if user else "/login",
        sign_form=_SIGN_OUT if user else _SIGN_IN,
        user=html.escape(user),
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
        realtime_port=int(environ.get("prefork.realtime_port", 0)),
        channel=CHAT_CHANNEL,
        max_name=MAX_NAME,
        max_text=MAX_TEXT,
        report_explained=report.explain(environ),
    ).encode()
    start_response(
        "200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(page)))]
    )
    return [page]


def _post_chat(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Publish in the request's transaction: delivered when the response is committed."""
    try:
        size = int(environ.get("CONTENT_LENGTH") or 0)
        posted = json.loads(environ["wsgi.input"].read(min(size, 4096)))
        name, text = str(posted["name"]).strip(), str(posted["text"]).strip()
    except (ValueError, KeyError, TypeError):
        return _plain(start_response, "400 Bad Request", "expected JSON {name, text}\n")
    if not name or not text:
        return _plain(start_response, "400 Bad Request", "name and text are required\n")
    tx = environ.get("prefork.db")
    if tx is None:
        return _plain(start_response, "503 Service Unavailable", "no database\n")
    message = {"name": name[:MAX_NAME], "text": text[:MAX_TEXT], "pid": os.getpid()}
    bus.publish(CHAT_CHANNEL, message, db=tx)
    start_response("204 No Content", [])
    return []


_SIGN_IN = (
    '<input name="user" placeholder="your name" maxlength="40" required> <button>Sign in</button>'
)
_SIGN_OUT = "<button>Sign out</button>"


def _sign_in(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """A new session id at sign-in (an id planted before it is worth nothing)."""
    size = int(environ.get("CONTENT_LENGTH") or 0)
    form = parse_qs(environ["wsgi.input"].read(min(size, 4096)).decode("utf-8", "replace"))
    user = (form.get("user") or [""])[0].strip()[:MAX_NAME]
    if not user:
        return _plain(start_response, "400 Bad Request", "a name is required\n")
    session = environ["prefork.session"]
    session["user"] = user
    session.rotate()
    return _back_home(start_response)


def _sign_out(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    environ["prefork.session"].destroy()
    return _back_home(start_response)


def _back_home(start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("303 See Other", [("Location", "/"), ("Content-Length", "0")])
    return []


def _plain(start_response: Callable[..., Any], status: str, text: str) -> Iterable[bytes]:
    body = text.encode()
    start_response(
        status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    )
    return [body]


_ACTIONS = {
    "/chat": _post_chat,
    "/login": _sign_in,
    "/logout": _sign_out,
    "/report": report.slow_report,
}


@cron(every="1m", name=DEMO_JOB)
def heartbeat(ctx: JobContext) -> None:
    """Runs every minute in a cron worker: posts the time to the chat, delivered once the
    job's transaction commits; the page shows its last run."""
    now = datetime.now(UTC)
    bus.publish(
        CHAT_CHANNEL,
        {
            "name": "cron",
            "text": f"it is {now:%H:%M:%S} UTC",
            "pid": os.getpid(),
            "via": "cron worker",
        },
        db=ctx.conn,
    )
    ctx.log.info("demo job posted the time to the chat")


def _job_state(environ: dict[str, Any]) -> str:
    tx = environ.get("prefork.db")
    if tx is None:
        return "no database"
    try:
        row = tx.execute(
            "SELECT last_run, last_status, next_run FROM prefork.cron_job WHERE name = %s",
            (DEMO_JOB,),
        ).fetchone()
    except Exception:  # SQLite (no cron) or the database away: the page still renders
        return "not available"
    if row is None:
        return "not registered yet (a cron worker registers it when it starts)"
    last_run, status, next_run = row
    if last_run is None:
        return f"not run yet; next run {next_run:%H:%M:%S} UTC"
    return f"last run {last_run:%H:%M:%S} UTC ({status}); next {next_run:%H:%M:%S} UTC"
