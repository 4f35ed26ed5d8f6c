"""The rule tests/unit/conftest.py holds every unit test to."""

from __future__ import annotations

import os
import subprocess

import psycopg
import pytest

from tests.unit.conftest import IntegrationOnly


def test_a_unit_test_cannot_start_a_process() -> None:
    with pytest.raises(IntegrationOnly, match="tests/integration"):
        subprocess.run(["true"], check=False)
    with pytest.raises(IntegrationOnly):
        os.fork()


def test_a_unit_test_cannot_reach_a_database() -> None:
    assert "PREFORK_DB_URI" not in os.environ
    with pytest.raises(IntegrationOnly, match="database"):
        psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
