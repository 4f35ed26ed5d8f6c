"""The pidfile: written at start, removed at exit only while it still names this process
(after a USR2 upgrade it names the new master, which must keep it)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


class PidfileError(Exception):
    """The pidfile cannot be written; the message names it and why."""


def write_pidfile(path: str) -> None:
    if not path:
        return
    try:
        with open(path, "w", encoding="ascii") as handle:
            handle.write(f"{os.getpid()}\n")
    except OSError as exc:
        raise PidfileError(f"pidfile {path!r}: cannot write it: {exc.strerror}") from None


def remove_pidfile(path: str) -> None:
    try:
        with open(path, encoding="ascii") as handle:
            mine = handle.read().strip() == str(os.getpid())
        if mine:
            os.unlink(path)
    except (OSError, ValueError):
        pass


@contextmanager
def pidfile(path: str) -> Iterator[None]:
    write_pidfile(path)
    try:
        yield
    finally:
        if path:
            remove_pidfile(path)
