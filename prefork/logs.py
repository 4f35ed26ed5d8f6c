"""Logging setup: one format for every process, to standard error or `logfile`."""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
# log_level values that are not Python level names: Odoo's runbot (logging.RUNBOT in odoo/netsvc.py)
PYTHON_LEVELS: dict[str, int | str] = {"runbot": 25}
# What setup_logging installed: the access log writes straight to it while nobody changed it.
_installed: tuple[logging.Handler, logging.Formatter] | None = None


class LogfileError(Exception):
    """The log file cannot be opened; the message names it and why."""


def setup_logging(level: str, logfile: str = "") -> None:
    handler: logging.Handler = (
        _file_handler(logfile) if logfile else logging.StreamHandler(sys.stderr)
    )
    formatter = logging.Formatter(FORMAT)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(PYTHON_LEVELS.get(level, level.upper()))
    global _installed
    _installed = handler, formatter


def _file_handler(logfile: str) -> logging.FileHandler:
    """Odoo creates the log file's directory when it is missing; so does prefork."""
    try:
        directory = os.path.dirname(logfile)
        if directory:
            os.makedirs(directory, exist_ok=True)
        return logging.FileHandler(logfile, encoding="utf-8")
    except OSError as exc:
        raise LogfileError(f"logfile {logfile!r}: cannot open it: {exc.strerror}") from None


def installed() -> tuple[logging.Handler, logging.Formatter] | None:
    """The root handler setup_logging installed and its formatter (None before it ran)."""
    return _installed


def log_stream() -> TextIO:
    """The file the root handler writes to, for faulthandler's C-level stack dumps."""
    for handler in logging.getLogger().handlers:
        stream = getattr(handler, "stream", None)
        if stream is not None and hasattr(stream, "fileno"):
            return stream  # type: ignore[no-any-return]
    return sys.stderr
