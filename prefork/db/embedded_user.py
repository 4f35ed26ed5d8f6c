"""The unprivileged user the embedded PostgreSQL runs as when prefork runs as root.

PostgreSQL refuses to run as root. pgserver's answer is a `pgserver` user with a login shell
and `chmod g+rx,o+rx` on every directory above the data and above its own binaries (a 0700
home becomes 0755). prefork changes nothing outside data_dir instead: the server runs as the
owner of an existing data_dir/postgres, else as the system user `prefork-postgres` (created
without a login shell or home if missing), and prefork refuses, naming the directory in the
way, when that user cannot reach the data or the binaries.

Reachability is decided from mode bits, owner and group membership, as the kernel does
without ACLs; an ACL that grants more is not seen (the refusal then names the directory).
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_USER = "prefork-postgres"
NO_HOME = "/nonexistent"  # Debian's convention for system users without a home
_NOLOGIN_SHELLS = ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false")
_SEARCH, _READ = 1, 4  # permission bits of one class (other): x, r
_WHAT_TO_DO = "run prefork as an unprivileged user, or set db_host/db_uri to a PostgreSQL server"


class UserError(Exception):
    """The embedded server cannot run as root here; the message says why and what to do."""


@dataclass(frozen=True)
class ServerUser:
    """A system user; uid -1 stands for one not created yet (only `other` bits apply)."""

    name: str
    uid: int = -1
    gid: int = -1
    groups: frozenset[int] = frozenset()

    @classmethod
    def of(cls, entry: pwd.struct_passwd) -> ServerUser:
        groups = os.getgrouplist(entry.pw_name, entry.pw_gid)
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid, frozenset(groups))

    def may(self, st: os.stat_result, bits: int) -> bool:
        """Whether the permission `bits` (_SEARCH, _READ) of st's class for this user are set:
        the owner's class if it owns the file, else the group's if a member, else other."""
        if st.st_uid == self.uid:
            shift = 6
        elif st.st_gid in self.groups:
            shift = 3
        else:
            shift = 0
        return (st.st_mode >> shift) & bits == bits

    def subprocess_args(self) -> dict[str, Any]:
        """subprocess.run() arguments that run a command as this user, without root's groups."""
        return {"user": self.uid, "group": self.gid, "extra_groups": sorted(self.groups)}


def server_user(pgdata: Path, default: str = DEFAULT_USER) -> ServerUser:
    """Who runs the cluster in `pgdata`: its owner if it exists and is not root, else
    `default`, which may not exist yet (see ensure_user)."""
    try:
        owner = pgdata.stat().st_uid
    except FileNotFoundError:
        owner = 0
    if owner != 0:
        try:
            return ServerUser.of(pwd.getpwuid(owner))
        except KeyError:
            raise UserError(
                f"{pgdata} is owned by uid {owner}, which has no user name; "
                f"chown -R it to an unprivileged user, {_WHAT_TO_DO}"
            ) from None
    try:
        return ServerUser.of(pwd.getpwnam(default))
    except KeyError:
        return ServerUser(default)


def check_reachable(user: ServerUser, pgdata: Path, bin_dir: Path) -> None:
    """Raise UserError unless `user` can reach pgdata and run the binaries in bin_dir."""
    pgdata, bin_dir = pgdata.resolve(), bin_dir.resolve()
    blocked = _first_blocked(user, pgdata.parent, _SEARCH)
    if blocked:
        raise UserError(
            f"data_dir {pgdata.parent}: {_describe(blocked, user)}; choose a "
            f"data_dir outside it, {_WHAT_TO_DO}"
        )
    install = bin_dir.parent
    needed = [(install / "lib", _READ | _SEARCH), (install / "share", _READ | _SEARCH)]
    needed += [(bin_dir / name, _READ | _SEARCH) for name in ("postgres", "initdb", "pg_ctl")]
    blocked = _first_blocked(user, bin_dir, _SEARCH) or next(
        (path for path, bits in needed if not user.may(path.stat(), bits)), None
    )
    if blocked:
        raise UserError(
            f"the PostgreSQL binaries in {install}: {_describe(blocked, user)}; "
            f"install prefork outside it, {_WHAT_TO_DO}"
        )


def ensure_user(user: ServerUser) -> tuple[ServerUser, bool]:
    """The user, created as a system user first if it does not exist: (user, created)."""
    if user.uid != -1:
        return user, False
    useradd = shutil.which("useradd")
    if useradd is None:
        raise UserError(
            f"the embedded PostgreSQL needs the system user '{user.name}', and "
            f"useradd is not installed to create it; create it, {_WHAT_TO_DO}"
        )
    shell = next((path for path in _NOLOGIN_SHELLS if os.path.exists(path)), "/bin/false")
    command = [
        useradd,
        "--system",
        "--user-group",
        "--no-create-home",
        "--home-dir",
        NO_HOME,
        "--shell",
        shell,
        "--comment",
        "prefork embedded PostgreSQL",
        user.name,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        raise UserError(
            f"cannot create the system user '{user.name}' for the embedded "
            f"PostgreSQL: {reason}; create it, {_WHAT_TO_DO}"
        )
    return ServerUser.of(pwd.getpwnam(user.name)), True


def _first_blocked(user: ServerUser, directory: Path, bits: int) -> Path | None:
    """The first of directory and its ancestors, from /, that lacks `bits` for user."""
    chain = [*reversed(directory.parents), directory]
    return next((path for path in chain if not user.may(path.stat(), bits)), None)


def _describe(path: Path, user: ServerUser) -> str:
    st = path.stat()
    kind = "searchable" if stat.S_ISDIR(st.st_mode) else "readable and executable"
    return (
        f"{path} (mode {stat.S_IMODE(st.st_mode):04o}, owner {_name(st.st_uid)}) is not "
        f"{kind} by user '{user.name}', and prefork changes no directory outside data_dir"
    )


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
