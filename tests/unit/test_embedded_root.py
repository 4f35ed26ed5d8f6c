"""Running the embedded PostgreSQL as root, in-process: which permission class a user
reaches a path through, and the binaries such a user cannot reach."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from prefork.db.embedded_user import ServerUser, UserError, check_reachable


def _stat(mode: int, uid: int = 0, gid: int = 0) -> os.stat_result:
    return os.stat_result((0o040000 | mode, 0, 0, 0, uid, gid, 0, 0, 0, 0))


@pytest.mark.parametrize(
    ("mode", "uid", "gid", "allowed"),
    [
        (0o755, 0, 0, True),  # others may search
        (0o700, 0, 0, False),  # nobody but root
        (0o711, 0, 0, True),  # search without read, as a home directory often is
        (0o750, 0, 50, True),  # through the user's group
        (0o750, 0, 51, False),
        (0o607, 42, 0, False),  # the owner's class applies to the owner, even with o+x
        (0o100, 42, 0, True),
    ],
)
def test_the_owner_class_then_the_group_then_others(
    mode: int, uid: int, gid: int, allowed: bool
) -> None:
    user = ServerUser("someone", uid=42, gid=50, groups=frozenset({50}))
    assert user.may(_stat(mode, uid, gid), 1) is allowed


def test_binaries_the_user_cannot_reach_are_named(base: Path) -> None:
    """A user not created yet counts as `other` everywhere."""
    hidden = base / "venv"
    (hidden / "pginstall" / "bin").mkdir(parents=True)
    (base / "data").mkdir()
    hidden.chmod(0o700)
    try:
        with pytest.raises(
            UserError,
            match=rf"^the PostgreSQL binaries in {hidden}/pginstall: "
            rf"{hidden} \(mode 0700, owner \S+\) is not searchable by user "
            r"'nobody-yet'.*install prefork outside it, run prefork as an "
            "unprivileged user",
        ):
            check_reachable(
                ServerUser("nobody-yet"), base / "data" / "postgres", hidden / "pginstall" / "bin"
            )
    finally:
        hidden.chmod(0o755)
