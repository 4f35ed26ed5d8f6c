"""Which of the application's Python files changed: inotify, or a scan of modification times.

Neither watcher blocks nor runs a thread: the master forks, and a thread holding a lock
across fork() would leave it held forever in the child. Both answer `changes()` at once, on
each turn of the loop that owns them; the inotify one also has a descriptor that loop can
wait on. Polling stands in when inotify is not there: inotify_simple cannot be imported, or
the kernel refuses (no inotify, too many instances, the watch limit reached: ENOSPC).
"""

from __future__ import annotations

import errno
import importlib.util
import logging
import os
import time
from collections.abc import Iterator
from typing import Any, Protocol

log = logging.getLogger("prefork.dev")

SUFFIX = ".py"
POLL_INTERVAL = 1.0  # seconds between two scans of the polling watcher
SKIPPED_DIRS = frozenset({"__pycache__", "site-packages", "dist-packages", "node_modules"})
INSTALLED = ("site-packages", "dist-packages")


class Watcher(Protocol):
    method: str  # how it watches, for the log: "inotify" or "polling"
    files: int  # Python files watched when it started

    def fileno(self) -> int:
        """A descriptor readable when something changed; -1: ask on every turn."""

    def changes(self, now: float) -> set[str]:
        """Paths created, modified, deleted or renamed since the last call."""

    def close(self) -> None: ...


def app_root(app_ref: str) -> str:
    """The directory the application's top-level module is found in, found without
    importing it; the working directory for the demo, for a module not found, or for one
    installed in site-packages (the developer's code is not there)."""
    cwd = os.getcwd()
    top = app_ref.partition(":")[0].partition(".")[0]
    try:
        spec = importlib.util.find_spec(top) if top else None
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return cwd
    if spec.submodule_search_locations:  # a package: the directory that holds it
        location = os.path.dirname(next(iter(spec.submodule_search_locations)))
    elif spec.origin and spec.has_location:
        location = os.path.dirname(spec.origin)
    else:
        return cwd
    if any(part in INSTALLED for part in location.split(os.sep)):
        return cwd
    return location


def skipped_dir(parent: str, name: str) -> bool:
    """Hidden directories, caches, installed packages and virtualenvs hold no code of the
    application's: not watched."""
    return (
        name.startswith(".")
        or name in SKIPPED_DIRS
        or os.path.exists(os.path.join(parent, name, "pyvenv.cfg"))
    )


def watched_file(name: str) -> bool:
    """A Python file; not an editor's hidden temporary one (.#app.py, .~app.py)."""
    return name.endswith(SUFFIX) and not name.startswith(".")


def walk(root: str) -> Iterator[tuple[str, list[str]]]:
    """Each watched directory under `root` (itself included) with its Python files."""
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = [name for name in subdirs if not skipped_dir(directory, name)]
        yield directory, [name for name in names if watched_file(name)]


def open_watcher(root: str) -> Watcher:
    """The inotify watcher, else the polling one (the reason logged)."""
    try:
        return InotifyWatcher(root)
    except ImportError as exc:
        reason = f"inotify_simple cannot be imported ({exc})"
    except OSError as exc:
        reason = f"inotify is unavailable ({exc.strerror or exc})"
        if exc.errno == errno.ENOSPC:
            reason += "; raise the sysctl fs.inotify.max_user_watches"
    log.warning("dev reload: %s; scanning the files every %g s instead", reason, POLL_INTERVAL)
    return PollingWatcher(root)


class PollingWatcher:
    """Compares each file's (mtime, size, inode) with the last scan, every `interval`."""

    method = "polling"

    def __init__(self, root: str, interval: float = POLL_INTERVAL) -> None:
        self.root = root
        self.interval = interval
        self.stamps = scan(root)
        self.files = len(self.stamps)
        self.next_scan = time.monotonic() + interval

    def fileno(self) -> int:
        return -1

    def changes(self, now: float) -> set[str]:
        if now < self.next_scan:
            return set()
        self.next_scan = now + self.interval
        stamps = scan(self.root)
        changed = {
            path
            for path in stamps.keys() | self.stamps.keys()
            if stamps.get(path) != self.stamps.get(path)
        }
        self.stamps = stamps
        return changed

    def close(self) -> None:
        """Nothing held."""


def scan(root: str) -> dict[str, tuple[int, int, int]]:
    stamps = {}
    for directory, names in walk(root):
        for name in names:
            path = os.path.join(directory, name)
            try:
                st = os.stat(path)
            except OSError:
                continue  # removed since it was listed
            stamps[path] = (st.st_mtime_ns, st.st_size, st.st_ino)
    return stamps


class InotifyWatcher:
    """One inotify watch per watched directory; a directory created or moved in is
    watched as it appears (its files count as changed)."""

    method = "inotify"

    def __init__(self, root: str) -> None:
        import inotify_simple

        self.flags: Any = inotify_simple.flags
        # A file counts once it is written and closed, not at each write, so a half-written
        # file is not compiled; renames cover editors that save through a temporary file.
        self.mask = (
            self.flags.CREATE
            | self.flags.CLOSE_WRITE
            | self.flags.MOVED_TO
            | self.flags.MOVED_FROM
            | self.flags.DELETE
        )
        self.root = root
        self.inotify: Any = inotify_simple.INotify(nonblocking=True)
        self.dirs: dict[int, str] = {}
        try:
            self.files = len(self._watch_tree(root))
        except OSError:
            self.inotify.close()
            raise

    def fileno(self) -> int:
        return int(self.inotify.fileno())

    def changes(self, now: float) -> set[str]:
        changed: set[str] = set()
        for event in self.inotify.read(timeout=0):
            changed |= self._event(event.wd, event.mask, event.name)
        return changed

    def _event(self, wd: int, mask: int, name: str) -> set[str]:
        flags = self.flags
        if mask & flags.Q_OVERFLOW:  # events were lost: something changed, somewhere
            return {self.root}
        if mask & flags.IGNORED:  # the directory is gone (its parent's event said so)
            self.dirs.pop(wd, None)
            return set()
        directory = self.dirs.get(wd)
        if directory is None:
            return set()
        path = os.path.join(directory, name)
        if not mask & flags.ISDIR:
            return {path} if watched_file(name) else set()
        if skipped_dir(directory, name):
            return set()
        if mask & (flags.CREATE | flags.MOVED_TO):
            return self._watch_new(path)
        return {path}  # a directory deleted or moved away: its modules are gone

    def _watch_new(self, path: str) -> set[str]:
        """Watch a directory created or moved in; its Python files count as changed (an
        empty new directory changes no code)."""
        try:
            return self._watch_tree(path)
        except OSError as exc:
            log.warning(
                "dev reload: cannot watch the new directory %s (%s): changes in it "
                "are not seen until the server restarts",
                path,
                exc.strerror or exc,
            )
            return {path}

    def _watch_tree(self, root: str) -> set[str]:
        found: set[str] = set()
        for directory, names in walk(root):
            self.dirs[self.inotify.add_watch(directory, self.mask)] = directory
            found.update(os.path.join(directory, name) for name in names)
        return found

    def close(self) -> None:
        self.inotify.close()
