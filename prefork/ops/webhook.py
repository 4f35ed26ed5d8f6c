"""Alerts POSTed as JSON to `alert_webhook`, from a thread of their own: the master only
enqueues, so a slow or dead receiver never delays it. Each delivery is tried ATTEMPTS
times with a growing delay, then dropped with a warning."""

from __future__ import annotations

import base64
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any
from urllib.parse import unquote

from prefork.config.secrets import url_host_only

log = logging.getLogger("prefork.master")

ATTEMPTS = 4
FIRST_DELAY = 1.0
TIMEOUT = 5.0


class Webhook:
    def __init__(self, url: str) -> None:
        self.url = url
        self._target, self._headers = _without_credentials(url)
        self._queue: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._deliver_all, name="webhook", daemon=True)
        self._thread.start()

    def send(self, payload: dict[str, Any]) -> None:
        self._queue.put(payload)

    def _deliver_all(self) -> None:
        while True:
            payload = self._queue.get()
            delay = FIRST_DELAY
            for attempt in range(1, ATTEMPTS + 1):
                if self._post(payload):
                    break
                if attempt == ATTEMPTS:
                    log.warning(
                        "alert webhook %s: gave up after %d attempts",
                        url_host_only(self.url),
                        ATTEMPTS,
                    )
                    break
                time.sleep(delay)
                delay *= 2

    def _post(self, payload: dict[str, Any]) -> bool:
        request = urllib.request.Request(
            self._target,
            json.dumps(payload).encode(),
            {"Content-Type": "application/json", **self._headers},
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                return bool(200 <= response.status < 300)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            log.debug("alert webhook %s: %s", url_host_only(self.url), exc)
            return False


def _without_credentials(url: str) -> tuple[str, dict[str, str]]:
    """urllib takes user:password@ in a URL for part of the host name: it is sent as HTTP
    Basic authentication instead, the way curl and receivers expect it."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url, {}
    credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    netloc = parts.netloc.rpartition("@")[2]
    token = base64.b64encode(credentials.encode()).decode()
    return parts._replace(netloc=netloc).geturl(), {"Authorization": f"Basic {token}"}
