"""The demo's slow report: a request that burns CPU past `limit_time_cpu`, so the page can
show what a user meets when the limit stops a worker, and which process serves next.

The report works for `limit_time_cpu` + REPORT_MARGIN seconds of CPU: more than the limit
lets a request use (the kernel's RLIMIT_CPU is armed at most 2 s above it), and bounded, so
that where no limit applies (threaded mode, or `limit_time_cpu = 0`) it still ends.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

import psutil

REPORT_MARGIN = 5  # CPU seconds beyond the limit
UNLIMITED_REPORT = 5  # CPU seconds where no limit applies


def cpu_limit(environ: dict[str, Any]) -> int:
    """The CPU seconds a request may use here; 0 = none (threaded mode applies none)."""
    return int(environ.get("prefork.limit_time_cpu", 0))


def report_seconds(limit: int) -> int:
    return limit + REPORT_MARGIN if limit else UNLIMITED_REPORT


def explain(environ: dict[str, Any]) -> str:
    """What pressing the button will do on this server, as HTML."""
    limit = cpu_limit(environ)
    if not limit:
        mode = (
            "this server runs with <code>limit_time_cpu = 0</code>"
            if environ["wsgi.multiprocess"]
            else "threaded mode (the default, <code>workers = 0</code>) applies no CPU limit "
            "per request"
        )
        return (
            f"The report burns {UNLIMITED_REPORT} s of CPU in a Python loop and "
            f"finishes: {mode}. Run <code>prefork run --workers 2 "
            f"--limit-time-cpu 5</code> to see the limit stop it."
        )
    quick = (
        ""
        if limit <= 10
        else f" (you wait at least {limit} s: run <code>prefork run "
        "--workers 2 --limit-time-cpu 5</code> to see it sooner)"
    )
    return (
        f"The report burns CPU in a Python loop for {report_seconds(limit)} s, longer "
        f"than <code>limit_time_cpu</code> ({limit} s here) lets a request run{quick}. "
        "The kernel stops the worker at the limit and the master starts another."
    )


def slow_report(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """POST /report: the limit answers it (504) where one applies; else it finishes."""
    limit = cpu_limit(environ)
    used = burn_cpu(report_seconds(limit))
    why = (
        f"although limit_time_cpu is {limit} s" if limit else "no CPU limit applies to this request"
    )
    return _send(
        start_response,
        "200 OK",
        "text/plain; charset=utf-8",
        f"the report finished after {used:.1f} s of CPU in pid {os.getpid()}: {why}\n",
    )


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


def _send(
    start_response: Callable[..., Any], status: str, content_type: str, text: str
) -> Iterable[bytes]:
    body = text.encode()
    start_response(
        status,
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ],
    )
    return [body]
