"""The settings a command runs with: the command line and files loaded, then the steps
that need the machine or cost time (workers = auto, admin_passwd checks).

`prefork run` loads through here at start and again at every HUP.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence

from prefork.config.command_line import parse_command_line
from prefork.config.loader import Loaded
from prefork.ops.adminpass import password_warnings


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, Loaded]:
    ns, loaded = parse_command_line(argv)
    if ns.command in ("run", "check"):  # a hashed admin_passwd costs ~0.5 s to check
        loaded.warnings.extend(password_warnings(loaded.settings))
    if loaded.settings.workers < 0:
        _resolve_auto_workers(loaded)
    return ns, loaded


def _resolve_auto_workers(loaded: Loaded) -> None:
    """workers = auto: the `prefork tune` rule applied to this machine, at every load (a
    HUP re-reads it too)."""
    from prefork.ops.machine import detect
    from prefork.ops.sizing import plan

    machine = detect()
    chosen = plan(machine.cpus, machine.ram)
    loaded.settings = dataclasses.replace(loaded.settings, workers=chosen.workers)
    loaded.notes.append(
        f"workers = auto: {chosen.workers} HTTP workers for {machine.cpus} "
        f"CPU(s) and {machine.ram >> 20} MiB ({machine.source}): "
        f"{chosen.reasons['workers']}"
    )
