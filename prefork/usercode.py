"""Importing the user's code: the application, cron_jobs and the realtime hooks.

'module:callable' and module names resolve from the directory prefork was started in, in
every process that imports them (HTTP and cron workers, the realtime process, threaded mode,
the master with preload_app, `check` and the subcommands), as `python -m` would. The
installed console script puts its own directory first on sys.path, not the working one.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType


class UserImportError(Exception):
    """A module of the user's could not be found; the message names it and the setting."""


def use_working_directory() -> None:
    """Put the working directory first on sys.path (once); forked processes inherit it."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def import_user_module(name: str, what: str, ref: str = "") -> ModuleType:
    """Import `name` for the setting `what` (whose value `ref` is, when it says more than
    the module); a missing module is a UserImportError, an error inside the module
    propagates as it is (its traceback is the user's help)."""
    use_working_directory()
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or name
        if name == missing or name.startswith(missing + "."):
            raise UserImportError(
                f"{what} {ref or name!r}: no module named {missing!r} (looked in "
                f"{os.getcwd()} and the installed packages)"
            ) from None
        raise
