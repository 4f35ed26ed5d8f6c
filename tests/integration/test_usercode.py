"""A user's own project, served as the README says: the installed console script, started in
the project's directory, no PYTHONPATH. Every process that imports the user's code finds it
there: HTTP workers, cron workers, the realtime process's hooks, threaded mode, preload_app,
`check`, `run --stop-after-init` and the subcommands."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from websockets.sync.client import connect

from tests.integration.conftest import PREFORK, Server, start_server

# Every test here starts `prefork run`: it finds the test database through PREFORK_DB_URI.
pytestmark = pytest.mark.usefixtures("database_uri")

PROJECT = '''\
"""A project of the user's: an application, a scheduled job and a bus hook."""
import os
from pathlib import Path

from prefork.cron import cron

HERE = Path(__file__).resolve().parent


@cron(every="1h", name="project.mark")
def mark(ctx):
    (HERE / "cron-ran").write_text(str(os.getpid()))


def auth(cookies, headers):
    (HERE / "auth-ran").write_text(str(os.getpid()))
    return "someone"


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"project " + str(os.getpid()).encode()]
'''

MODES = {
    "threaded": (),
    "workers": ("--workers", "2"),
    "preload": ("--workers", "2", "--preload-app"),
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    directory = tmp_path / "project"
    directory.mkdir()
    (directory / "project.py").write_text(PROJECT)
    return directory


def prefork(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    full_env.update(PREFORK_DATA_DIR=str(cwd / "data"), **(env or {}))
    return subprocess.run(
        [PREFORK, *args], capture_output=True, text=True, cwd=cwd, env=full_env, timeout=60
    )


def eventually(path: Path, server: Server, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path.name} never appeared; log:\n{server.log()}")


@pytest.fixture
def served(
    project: Path, tmp_path: Path, fresh_database: str, request: pytest.FixtureRequest
) -> Iterator[Server]:
    server = start_server(
        tmp_path,
        "--app",
        "project:application",
        "--bus-auth",
        "project:auth",
        "--max-cron-threads",
        "1",
        *MODES[request.param],
        cwd=project,
        env={"PREFORK_DB_URI": fresh_database},
    )
    try:
        yield server
    finally:
        assert server.stop() == 0, server.log()
    assert "ModuleNotFoundError" not in server.log()


@pytest.mark.parametrize("served", list(MODES), indirect=True)
def test_every_process_imports_the_project_from_its_directory(
    served: Server, project: Path, fresh_database: str
) -> None:
    status, _, body = served.get("/")
    assert status == 200 and body.startswith(b"project ")
    ran = prefork(project, "cron", "run", "project.mark", env={"PREFORK_DB_URI": fresh_database})
    assert ran.returncode == 0, ran.stderr
    eventually(project / "cron-ran", served)  # a cron worker (or thread) ran the job
    with connect(f"ws://127.0.0.1:{served.realtime_port}/websocket", open_timeout=10):
        eventually(project / "auth-ran", served)  # the realtime process called the hook


def test_stop_after_init_prepares_everything_then_exits(project: Path, fresh_database: str) -> None:
    logfile = project / "logs" / "server.log"  # its directory is created, as Odoo does
    done = prefork(
        project,
        "run",
        "--app",
        "project",
        "--workers",
        "2",
        "--stop-after-init",
        "--logfile",
        str(logfile),
        "--pidfile",
        str(project / "server.pid"),
        env={"PREFORK_DB_URI": fresh_database},
    )
    assert done.returncode == 0, done.stderr
    assert "exiting as --stop-after-init asks" in logfile.read_text()
    assert not (project / "server.pid").exists()  # written, then removed at exit
    with psycopg.connect(fresh_database) as conn:  # prefork's schema is migrated
        assert conn.execute(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'prefork'"
        ).fetchone() == (1,)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--app", "nosuch:app"), "app 'nosuch:app': no module named 'nosuch'"),
        (("--app", "project:nope"), "app 'project:nope': 'project' has no attribute 'nope'"),
        (
            ("--app", "broken"),
            "app 'broken': importing it raised ModuleNotFoundError: "
            "No module named 'not_installed'",
        ),
        (
            ("--app", "project", "--cron-jobs", "jobs_elsewhere"),
            "cron_jobs 'jobs_elsewhere': no module named 'jobs_elsewhere'",
        ),
        (
            ("--app", "project", "--bus-auth", "project:missing"),
            "bus_auth 'project:missing': 'project' has no attribute 'missing'",
        ),
    ],
)
def test_check_and_stop_after_init_name_what_cannot_be_imported(
    project: Path, args: tuple[str, ...], expected: str
) -> None:
    (project / "broken.py").write_text("import not_installed\n")
    checked = prefork(project, "check", "-p", "0", "--gevent-port", "0", *args)
    assert checked.returncode == 2
    errors = [line for line in checked.stdout.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], checked.stdout
    assert "Traceback" not in checked.stdout + checked.stderr
    init = prefork(project, "run", "-p", "0", "--stop-after-init", *args)
    assert init.returncode == 2 and expected in init.stderr
    assert "Traceback" not in init.stderr


def test_check_passes_for_the_project(project: Path) -> None:
    checked = prefork(
        project,
        "check",
        "-p",
        "0",
        "--gevent-port",
        "0",
        "--app",
        "project",
        "--workers",
        "2",
        "--logfile",
        str(project / "new" / "server.log"),
    )
    assert checked.returncode == 0, checked.stdout
    assert not (project / "new").exists()  # check creates nothing


def test_a_pidfile_in_a_missing_directory_is_one_clear_error(project: Path) -> None:
    pidfile = project / "missing" / "server.pid"
    checked = prefork(project, "check", "-p", "0", "--gevent-port", "0", "--pidfile", str(pidfile))
    assert checked.returncode == 2
    assert f"error: pidfile '{pidfile}' cannot be written: no directory" in checked.stdout
    ran = prefork(
        project,
        "run",
        "-p",
        "0",
        "--gevent-port",
        "0",
        "--workers",
        "1",
        "--http-interface",
        "127.0.0.1",
        "--pidfile",
        str(pidfile),
    )
    assert ran.returncode == 2 and f"pidfile '{pidfile}': cannot write it" in ran.stderr
    assert "Traceback" not in ran.stderr


def test_an_unusable_logfile_is_one_clear_error(project: Path) -> None:
    (project / "file").write_text("")
    logfile = project / "file" / "server.log"  # its "directory" is a file
    checked = prefork(project, "check", "-p", "0", "--gevent-port", "0", "--logfile", str(logfile))
    assert checked.returncode == 2 and f"error: logfile '{logfile}'" in checked.stdout
    ran = prefork(project, "run", "-p", "0", "--logfile", str(logfile))
    assert ran.returncode == 2
    assert ran.stderr.startswith(f"prefork: error: logfile '{logfile}': cannot open it")
    assert "Traceback" not in ran.stderr


def test_a_taken_realtime_port_is_named(project: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = (
            "-p",
            "0",
            "--http-interface",
            "127.0.0.1",
            "--gevent-port",
            str(port),
            "--workers",
            "1",
        )
        message = f"cannot listen on 127.0.0.1:{port} (gevent_port)"
        checked = prefork(project, "check", *args)
        assert checked.returncode == 2 and f"error: {message}" in checked.stdout
        ran = prefork(project, "run", *args)
        assert ran.returncode == 1 and message in ran.stderr, ran.stderr
        assert "Traceback" not in ran.stderr
