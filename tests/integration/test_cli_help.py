"""Every entry point's --help, run through the installed console script."""

from __future__ import annotations

import subprocess

import pytest

from prefork.config.command_line import COMMANDS
from prefork.config.settings import SPECS
from tests.integration.conftest import PREFORK, ROOT


def helped(*args: str) -> str:
    result = subprocess.run(
        [PREFORK, *args, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=30
    )
    assert result.returncode == 0 and not result.stderr, result.stderr
    return result.stdout


def test_the_programs_help_lists_every_command() -> None:
    text = helped()
    assert text.startswith("usage: prefork")
    for command in COMMANDS:
        assert command in text


@pytest.mark.parametrize("command", COMMANDS)
def test_each_commands_help_shows_every_option(command: str) -> None:
    text = helped(command)
    assert text.startswith(f"usage: prefork {command}")
    for spec in SPECS.values():  # help texts may hold '%' (argparse formats them with %)
        for flag in spec.flags:
            assert flag in text, f"{flag} missing from 'prefork {command} --help'"
    assert "+/-10% jitter" in " ".join(text.split())


def test_run_help_lists_dev_reload() -> None:
    text = " ".join(helped("run").split())
    assert "--dev DEV_MODE" in text
    assert "for development only, never in production" in text


@pytest.mark.parametrize("command", ["run", "check"])
def test_run_and_check_help_say_odoo_bin_flags_are_accepted(command: str) -> None:
    text = " ".join(helped(command).split())
    assert "odoo-bin's flags are accepted too" in text
    assert "docs/odoo.md" in text
    assert "--x-sendfile" not in text  # hidden from the list of options
