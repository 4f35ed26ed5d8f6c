"""The master's health monitor: a crash loop raises an alert (log, state, webhook) that
clears when the crashes stop; a receiver that fails is retried."""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import PREFORK, ROOT, ServerFactory
from tests.integration.test_master import get, wait_for, wait_workers


class Receiver(HTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.payloads: list[dict[str, Any]] = []
        self.authorizations: list[str] = []
        self.failures_left = 1  # the first delivery gets a 500: the sender must retry


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.authorizations.append(self.headers.get("Authorization", ""))
        if self.server.failures_left:
            self.server.failures_left -= 1
            self.send_response(500)
        else:
            self.server.payloads.append(json.loads(body))
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_crash_loop_alert_in_log_state_and_webhook(
    server_factory: ServerFactory, receiver: Receiver, tmp_path: Path
) -> None:
    url = f"http://bot:p%40ss@127.0.0.1:{receiver.server_port}/hook"  # credentials: Basic
    server = server_factory.start(
        "--app",
        "tests.apps.testapp:app",
        "--workers",
        "2",
        "--max-cron-threads",
        "0",
        "--alert-window",
        "4",
        "--alert-crashes",
        "3",
        "--alert-webhook",
        url,
    )
    wait_workers(server, 2)
    for _ in range(3):
        try:
            get(server, "/crash", timeout=5)
        except Exception:
            pass  # the worker died mid-request: the connection closes
        time.sleep(0.2)
    server.wait_log(
        r"ERROR prefork.master: ALERT crash-loop: 3 exits in 4s, last crash: "
        r"http worker #\d \(pid \d+\) exited: crash, exit code 7"
    )
    wait_for(
        lambda: (
            "ALERT crash-loop: 3 exits"
            in subprocess.run(
                [PREFORK, "status", "-p", "0", "--data-dir", str(tmp_path / "data")],
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=30,
            ).stdout
        ),
        10,
    )
    wait_for(lambda: len(receiver.payloads) >= 1, 15)  # after one failed attempt
    raised = receiver.payloads[0]
    assert raised["event"] == "raised" and raised["kind"] == "crash-loop"
    assert raised["count"] == 3 and "exit code 7" in raised["reason"]
    assert set(receiver.authorizations) == {"Basic " + base64.b64encode(b"bot:p@ss").decode()}
    assert "p%40ss" not in server.log()
    # No more crashes: the window empties and the alert clears, everywhere.
    server.wait_log(r"alert crash-loop cleared", timeout=15)
    wait_for(lambda: len(receiver.payloads) >= 2, 15)
    assert receiver.payloads[1]["event"] == "cleared"
    assert get(server, "/echo")[0] == 200  # served throughout
