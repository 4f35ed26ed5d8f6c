"""The demo's slow report: a request that burns CPU past `limit_time_cpu`, so the page can
show what a user meets when the limit stops a worker, and which process serves next.

The report works for `limit_time_cpu` + REPORT_MARGIN seconds of CPU: more than the limit
lets a request use (the kernel's RLIMIT_CPU is armed at most 2 s above it), and bounded, so
that where no limit applies (threaded mode, or `limit_time_cpu = 0`) it still ends.

A browser sends a request again, once, when the keep-alive connection it reused closes
without a response (Chromium does so even for a POST), which is what a worker stopped by
the kernel leaves: each press of the button carries a run id, and a run already claimed by
a worker is answered with that worker's pid instead of being worked a second time.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import psutil

REPORT_MARGIN = 5  # CPU seconds beyond the limit
UNLIMITED_REPORT = 5  # CPU seconds where no limit applies
RUN_ID = re.compile(r"[0-9a-f]{8,40}")
CLAIM_LIFETIME = 3600  # seconds a stopped run's claim is kept


def cpu_limit(environ: dict[str, Any]) -> int:
    """The CPU seconds a request may use here; 0 = none (threaded mode applies none)."""
    return int(environ.get("prefork.limit_time_cpu", 0))


def report_seconds(limit: int) -> int:
    return limit + REPORT_MARGIN if limit else UNLIMITED_REPORT


def explain(environ: dict[str, Any]) -> str:
    """What pressing the button will do on this server, as HTML."""
    limit = cpu_limit(environ)
    if not limit:
        mode = ("this server runs with <code>limit_time_cpu = 0</code>"
                if environ["wsgi.multiprocess"] else
                "threaded mode (the default, <code>workers = 0</code>) applies no CPU limit "
                "per request")
        return (f"The report burns {UNLIMITED_REPORT} s of CPU in a Python loop and "
                f"finishes: {mode}. Run <code>prefork run --workers 2 "
                f"--limit-time-cpu 5</code> to see the limit stop it.")
    quick = ("" if limit <= 10 else f" (you wait at least {limit} s: run <code>prefork run "
             "--workers 2 --limit-time-cpu 5</code> to see it sooner)")
    return (f"The report burns CPU in a Python loop for {report_seconds(limit)} s, longer "
            f"than <code>limit_time_cpu</code> ({limit} s here) lets a request run{quick}. "
            "The kernel stops the worker at the limit and the master starts another.")


def slow_report(environ: dict[str, Any],
                start_response: Callable[..., Any]) -> Iterable[bytes]:
    """POST /report?run=ID: 409 with the pid that took the run when it was claimed before."""
    run = (parse_qs(environ.get("QUERY_STRING", "")).get("run") or [""])[0]
    claims = Claims(Path(tempfile.gettempdir()) / f"prefork-demo-{os.getuid()}")
    known = RUN_ID.fullmatch(run) is not None
    owner = claims.claim(run) if known else None
    if owner is not None:
        running = owner > 0 and psutil.pid_exists(owner)
        body = json.dumps({"run": run, "pid": owner or None, "running": running})
        return _send(start_response, "409 Conflict", "application/json", body + "\n")
    limit = cpu_limit(environ)
    used = burn_cpu(report_seconds(limit))
    if known:
        claims.release(run)
    why = (f"although limit_time_cpu is {limit} s" if limit else
           "no CPU limit applies to this request")
    return _send(start_response, "200 OK", "text/plain; charset=utf-8",
                 f"the report finished after {used:.1f} s of CPU in pid {os.getpid()}: "
                 f"{why}\n")


class Claims:
    """Which process took which run, as files (the workers of one host share them)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def claim(self, run: str) -> int | None:
        """None when this process now holds `run`; else the pid of the one that took it
        (0 when it cannot be read)."""
        self.folder.mkdir(mode=0o700, exist_ok=True)
        self._forget_old()
        path = self.folder / run
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            try:
                return int(path.read_text() or 0)
            except (OSError, ValueError):
                return 0
        with os.fdopen(fd, "w") as claim:
            claim.write(str(os.getpid()))
        return None

    def release(self, run: str) -> None:
        (self.folder / run).unlink(missing_ok=True)

    def _forget_old(self) -> None:
        """A run whose worker was stopped keeps its claim, for CLAIM_LIFETIME."""
        oldest = time.time() - CLAIM_LIFETIME
        for path in self.folder.iterdir():
            try:
                if path.stat().st_mtime < oldest:
                    path.unlink()
            except OSError:
                pass


def burn_cpu(seconds: float) -> float:
    """Work in pure Python (signal handlers run between its steps) until this process has
    used `seconds` more CPU time; returns the CPU time used."""
    start = time.process_time()
    total = 0
    while time.process_time() - start < seconds:
        for number in range(10_000):
            total += number * number
    return time.process_time() - start


def worker(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Which process serves this request, and since when: a fresh one replaced a worker."""
    started = psutil.Process().create_time()
    body = json.dumps({"pid": os.getpid(), "age": round(time.time() - started, 1)})
    return _send(start_response, "200 OK", "application/json", body + "\n")


def _send(start_response: Callable[..., Any], status: str, content_type: str,
          text: str) -> Iterable[bytes]:
    body = text.encode()
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store")])
    return [body]
