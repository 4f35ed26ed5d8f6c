"""data_dir holds what only the server's user may read: request lines with their query
strings (run/), session files and the key that signs their cookies, metrics.

prefork creates data_dir and every directory under it 0700 and its own files 0600,
whatever the umask (the application's files keep the umask: prefork does not change it).
As root with the embedded PostgreSQL, which runs as another user and must reach
data_dir/postgres, data_dir is 0711: others may pass through it but list nothing, and
everything in it is 0700/0600. A data_dir that already exists keeps its modes; the server
warns at start about any that let other users read or write.
"""

from __future__ import annotations

import os
import stat
import tempfile

DIR_MODE = 0o700
SEARCHABLE_MODE = 0o711
FILE_MODE = 0o600
# What the start-up check looks at, besides data_dir itself: everything prefork keeps there.
KEPT = ("run", "metrics", "sessions", "session.secret", "forwarded-headers-seen")


def private_dir(path: str, mode: int = DIR_MODE) -> None:
    """Create `path` and any missing parent, each with `mode` (os.makedirs gives the
    parents the umask's mode, which would leave a new data_dir 0755 above a 0700 leaf)."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(os.path.abspath(path))
    if parent != path:
        private_dir(parent, mode)
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        return  # another process made it first
    os.chmod(path, mode)  # mkdir's mode passes through the umask


def write_private(path: str, data: bytes) -> None:
    """Replace `path` with `data` atomically, as a 0600 file (a reader never sees half)."""
    directory = os.path.dirname(path)
    private_dir(directory)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-")  # 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def prepare(data_dir: str, *, searchable: bool) -> list[str]:
    """At the server's start: data_dir created if missing; warnings for what others can
    read or write in it."""
    private_dir(data_dir, SEARCHABLE_MODE if searchable else DIR_MODE)
    return loose_modes(data_dir)


def loose_modes(data_dir: str) -> list[str]:
    """A warning for data_dir if group or others may read or write it, and for each entry
    prefork keeps there that group or others may use at all."""
    found = [(data_dir, 0o066)] + [(os.path.join(data_dir, name), 0o077) for name in KEPT]
    warnings = []
    for path, forbidden in found:
        try:
            mode = stat.S_IMODE(os.lstat(path).st_mode)
        except FileNotFoundError:
            continue
        if mode & forbidden:
            wanted = "700" if os.path.isdir(path) else "600"
            warnings.append(
                f"{path} is mode {mode:04o}: other users can read what prefork "
                f"keeps there (request lines, sessions, keys); chmod {wanted} "
                f"{path}"
            )
    return warnings
