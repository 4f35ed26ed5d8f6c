"""`prefork systemd [--user U] [--group G] [-c CONFIG]`: a unit for this installation."""

from __future__ import annotations

import getpass
import grp
import os

from prefork.config.loader import Loaded
from prefork.ops.systemd import render


def systemd(loaded: Loaded, user: str | None, group: str | None) -> int:
    user = user or getpass.getuser()
    group = group or grp.getgrgid(os.getgid()).gr_name
    print(render(loaded.settings, loaded.config_path, user, group), end="")
    return 0
