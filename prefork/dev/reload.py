"""Dev reload (dev_mode = reload): when a change to the application's code should replace it.

Changes are gathered until DEBOUNCE seconds pass without another (a save, a git checkout
come in bursts), then the changed files are compiled, never imported. A file that does not
compile keeps the running code: its error is logged once (again only when the error
changes), and it is compiled again at every later change, so an edit elsewhere does not
reload past it; its fix does. Odoo's autoreload does the same compile() check.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import warnings
from collections.abc import Sequence

from prefork.config import Settings
from prefork.dev.watch import SUFFIX, Watcher, app_root, open_watcher, walk

log = logging.getLogger("prefork.dev")

DEBOUNCE = 0.3  # seconds without a further change before the changes are acted on
NAMED = 3  # changed files named in a log line


class CodeReload:
    def __init__(self, watcher: Watcher, root: str) -> None:
        self.watcher = watcher
        self.root = root
        self.pending: set[str] = set()
        self.quiet_at = 0.0  # monotonic: when the pending changes are acted on
        self.broken: dict[str, str] = {}  # file -> its compile error, as logged

    @classmethod
    def open(cls, settings: Settings) -> CodeReload:
        root = app_root(settings.app)
        return cls(open_watcher(root), root)

    def fileno(self) -> int:
        return self.watcher.fileno()

    def close(self) -> None:
        self.watcher.close()

    def due(self, now: float) -> list[str]:
        """The changed files once they settled and everything compiles; [] until then."""
        changed = self.watcher.changes(now)
        if changed:
            self.pending |= changed
            self.quiet_at = now + DEBOUNCE
            return []
        if not self.pending or now < self.quiet_at:
            return []
        paths, self.pending = sorted(self.pending), set()
        if not self._compiles(paths):
            return []
        forget_bytecode(paths)
        return paths

    def named(self, paths: Sequence[str]) -> str:
        names = [os.path.relpath(path, self.root) for path in paths[:NAMED]]
        more = len(paths) - NAMED
        return ", ".join(names) + (f" and {more} more" if more > 0 else "")

    def _compiles(self, paths: list[str]) -> bool:
        reported = False
        for path in sorted({*paths, *self.broken}):
            error = compile_error(path)
            if error is None:
                self.broken.pop(path, None)
            elif self.broken.get(path) != error:
                self.broken[path] = error
                reported = True
                log.error("dev reload: %s; the running code keeps serving until it is fixed", error)
        if self.broken and not reported:
            log.info(
                "dev reload: %s changed; not reloading while %s does not compile (the "
                "error is logged above)",
                self.named(paths),
                self.named(sorted(self.broken)),
            )
        return not self.broken


def compile_error(path: str) -> str | None:
    """Why the Python file `path` does not compile; None when it does (or is gone)."""
    if not path.endswith(SUFFIX):
        return None
    try:
        with open(path, "rb") as source:
            code = source.read()
    except OSError:
        return None  # deleted or renamed away: nothing to compile
    try:
        with warnings.catch_warnings():  # SyntaxWarning (invalid escape...) is not an error
            warnings.simplefilter("ignore")
            compile(code, path, "exec", dont_inherit=True)
    except SyntaxError as exc:  # IndentationError and TabError too
        return f"syntax error in {exc.filename or path}, line {exc.lineno}: {exc.msg}"
    except ValueError as exc:  # a null byte
        return f"{path} cannot be compiled: {exc}"
    return None


def forget_bytecode(paths: Sequence[str]) -> None:
    """Remove the cached bytecode of changed files: the import system trusts it while the
    source keeps its size and its modification time in whole seconds, so an edit within
    the second of the last compile (one -> two) would import the old code."""
    for path in paths:
        try:
            os.unlink(importlib.util.cache_from_source(path))
        except (OSError, ValueError):
            pass  # none cached, or not a Python source


def reload_effect(settings: Settings) -> str:
    """What a code change does in this configuration."""
    if not settings.multiprocessing:
        return "re-executes the threaded server on the same sockets, as HUP does"
    return "replaces the workers gracefully, as HUP does (the configuration is not re-read)"


def dev_warning(settings: Settings, watching: CodeReload | None = None) -> str:
    """`check`'s warning, and the start's (`watching`: the watcher the server opened)."""
    if watching is None:
        root = app_root(settings.app)
        files, how = sum(len(names) for _, names in walk(root)), ""
    else:
        root, files = watching.root, watching.watcher.files
        how = f" (watched with {watching.watcher.method})"
    return (
        f"dev reload is on (dev_mode = {settings.dev_mode}): a change to one of the "
        f"{files} Python file(s) under {root}{how} {reload_effect(settings)}; for "
        "development only, not for production"
    )


def inert_note(settings: Settings) -> list[str]:
    """Odoo's developer features that prefork accepts and does nothing with, as a note."""
    inert = [
        feature
        for feature in settings.dev_mode.split(",")
        if feature and feature not in ("reload", "all")
    ]
    if not inert:
        return []
    return [
        f"dev_mode {','.join(inert)}: Odoo's developer feature(s), accepted and without "
        "effect in prefork (only reload, and all, which includes it, do something)"
    ]
