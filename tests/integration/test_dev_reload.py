"""dev_mode = reload: real servers started from an application's directory, real edits.

The end-to-end tests wait on what the server logs and answers, never on time: an edit is
seen when the response changes, a refused reload when the log says so.
"""

from __future__ import annotations

import errno
import http.client
import os
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from prefork.dev import watch
from prefork.dev.watch import InotifyWatcher, PollingWatcher, open_watcher
from tests.integration.conftest import PREFORK, Server, ServerFactory
from tests.integration.test_master import wait_for, workers_of
from tests.unit.test_dev_reload import SYNTAX_ERROR

# A module of that name in the application's directory comes first on sys.path: the server
# cannot import the library, as on a machine without it, and falls back to polling.
NO_INOTIFY = 'raise ImportError("inotify_simple is not installed here")\n'


def app_source(body: str, prelude: str = "") -> str:
    return prelude + textwrap.dedent(f"""
        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [{body!r}.encode()]
        """)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "project"
    directory.mkdir()
    (directory / "devapp.py").write_text(app_source("one"))
    return directory


class DevServers:
    """Starts the project's app (tests/apps is not watched: the project is)."""

    def __init__(self, factory: ServerFactory, app_dir: Path) -> None:
        self._factory, self._app_dir = factory, app_dir

    def start(self, *args: str, wait: bool = True) -> Server:
        return self._factory.start(
            "--app", "devapp:app", "--max-cron-threads", "0", *args, cwd=self._app_dir, wait=wait
        )


@pytest.fixture
def dev_server(server_factory: ServerFactory, app_dir: Path) -> DevServers:
    return DevServers(server_factory, app_dir)


def body(server: Server) -> bytes:
    status, _, content = server.get("/")
    assert status == 200
    return content


def wait_body(server: Server, expected: bytes) -> None:
    wait_for(
        lambda: answers(server, expected), 20, f"never answered {expected!r}; log:\n{server.log()}"
    )


def answers(server: Server, expected: bytes) -> bool:
    """The threaded server closes the connections it has accepted and not yet read from
    when it re-executes (as on HUP): a client connecting at that instant is reset, and
    tries again, as a browser does."""
    try:
        return body(server) == expected
    except (ConnectionError, http.client.RemoteDisconnected):
        return False


def worker_pids(server: Server) -> set[int]:
    return {process.pid for process in workers_of(server)}


def holds_inotify(pid: int) -> bool:
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd) == "anon_inode:inotify":
                return True
        except FileNotFoundError:
            continue  # closed since it was listed
    return False


# -- multi-processing mode ---------------------------------------------------------------------


def test_workers_are_replaced_on_an_edit_and_a_syntax_error_keeps_them(
    dev_server: DevServers, app_dir: Path
) -> None:
    server = dev_server.start("--workers", "2", "--dev", "reload")
    server.wait_log(
        r"dev reload is on \(dev_mode = reload\): a change to one of the 1 Python "
        r"file\(s\) under \S+project \(watched with inotify\) replaces the workers"
    )
    master = server.proc.pid
    wait_for(lambda: len(worker_pids(server)) == 2)
    first = worker_pids(server)
    assert body(server) == b"one"
    assert holds_inotify(master) and not any(holds_inotify(pid) for pid in first)

    (app_dir / "devapp.py").write_text(app_source("two"))
    wait_body(server, b"two")
    wait_for(lambda: len(worker_pids(server)) == 2 and not worker_pids(server) & first)
    assert server.proc.pid == master and server.proc.poll() is None
    server.wait_log(r"dev reload: devapp.py changed")

    (app_dir / "devapp.py").write_text(app_source("three").replace("def app(", "def app(("))
    server.wait_log(rf"{SYNTAX_ERROR} \S+devapp.py, line 2: .*; the running code keeps serving")
    (app_dir / "helpers.py").write_text("VALUE = 1\n")  # an edit elsewhere: not past the error
    server.wait_log(r"helpers.py changed; not reloading while devapp.py does not compile")
    assert body(server) == b"two"
    assert server.log().count(SYNTAX_ERROR) == 1

    (app_dir / "devapp.py").write_text(app_source("three"))
    wait_body(server, b"three")
    assert server.log().count(SYNTAX_ERROR) == 1 and server.proc.pid == master


def test_new_workers_failing_at_import_leave_the_old_ones_serving(
    dev_server: DevServers, app_dir: Path
) -> None:
    server = dev_server.start("--workers", "2", "--dev", "reload")
    assert body(server) == b"one"
    (app_dir / "devapp.py").write_text(app_source("two", prelude="missing_name\n"))
    server.wait_log(
        r"reload abandoned: http worker #\d of generation 2 could not start "
        r"\(NameError: name 'missing_name' is not defined\); generation 1 keeps "
        r"serving"
    )
    assert server.proc.poll() is None
    assert body(server) == b"one"
    (app_dir / "devapp.py").write_text(app_source("two"))
    wait_body(server, b"two")  # the next change reloads again
    server.wait_log(r"reloading: starting 2 new worker\(s\) \(generation 3\)")


def test_a_hup_whose_workers_cannot_start_keeps_the_previous_generation(
    dev_server: DevServers, app_dir: Path
) -> None:
    """Without dev reload: the fix is the master's, for any reload. It used to retry the new
    workers five times, then stop the whole server, the old workers with it."""
    import signal

    server = dev_server.start("--workers", "2")
    wait_for(lambda: len(worker_pids(server)) == 2)
    (app_dir / "devapp.py").write_text(app_source("two", prelude="missing_name\n"))
    server.signal(signal.SIGHUP)
    server.wait_log(r"reload abandoned: .* generation 1 keeps serving")
    assert body(server) == b"one"
    assert server.proc.poll() is None


def test_preload_app_with_dev_reload_is_refused(dev_server: DevServers) -> None:
    server = dev_server.start("--workers", "2", "--preload-app", "--dev", "all", wait=False)
    assert server.proc.wait(30) == 2
    assert (
        "prefork: error: dev_mode = all (from command line) cannot reload with "
        "preload_app (from command line)"
    ) in server.log()
    assert "Traceback" not in server.log()


# -- threaded mode -----------------------------------------------------------------------------


@pytest.mark.parametrize("watcher", ["inotify", "polling"])
def test_threaded_server_reexecutes_on_an_edit(
    dev_server: DevServers, app_dir: Path, watcher: str
) -> None:
    if watcher == "polling":
        (app_dir / "inotify_simple.py").write_text(NO_INOTIFY)
    server = dev_server.start("--dev", "reload")
    server.wait_log(rf"\(watched with {watcher}\) re-executes the threaded server")
    assert body(server) == b"one"
    (app_dir / "devapp.py").write_text(app_source("two"))
    wait_body(server, b"two")
    server.wait_log(
        r"(?s)dev reload: devapp.py changed: reloading the whole process.*"
        r"re-executing"
    )
    assert server.proc.poll() is None
    if watcher == "polling":
        assert (
            "inotify_simple cannot be imported (inotify_simple is not installed here); "
            "scanning the files every 1 s instead" in server.log()
        )


def test_threaded_server_waits_for_a_fix_when_the_new_code_raises(
    dev_server: DevServers, app_dir: Path
) -> None:
    server = dev_server.start("--dev", "reload")
    (app_dir / "devapp.py").write_text(app_source("two", prelude="missing_name\n"))
    server.wait_log(
        r"dev reload: the application could not be imported \(traceback above\); "
        r"waiting for a change under \S+project"
    )
    assert server.proc.poll() is None
    (app_dir / "devapp.py").write_text(app_source("three"))
    wait_body(server, b"three")


# -- configuration and check -------------------------------------------------------------------


def run_prefork(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFORK_CONFIG", "PYTHONPATH")}
    return subprocess.run(
        [PREFORK, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=60
    )


def test_an_unknown_dev_mode_value_names_file_line_key_and_values(
    tmp_path: Path, app_dir: Path
) -> None:
    conf = tmp_path / "odoo.conf"
    conf.write_text("[options]\nworkers = 2\n\ndev_mode = reload,hot\n")
    result = run_prefork(app_dir, "check", "-c", str(conf))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"prefork: error: {conf}:4: option 'dev_mode': expected a comma-separated list of "
        "all, reload, qweb, xml, werkzeug, access, replica, pdb, ipdb, pudb, wdb, got "
        "'reload,hot'"
    )


def test_check_warns_that_dev_reload_is_on(app_dir: Path) -> None:
    result = run_prefork(
        app_dir, "check", "--app", "devapp:app", "--workers", "2", "-p", "0", "--dev", "reload,xml"
    )
    out = " ".join(result.stdout.split())
    assert (
        f"warning: dev reload is on (dev_mode = reload,xml): a change to one of the 1 "
        f"Python file(s) under {app_dir} replaces the workers gracefully"
    ) in out
    assert "for development only, not for production" in out
    assert "note: dev_mode xml: Odoo's developer feature(s), accepted and without effect" in out
    result = run_prefork(app_dir, "check", "--app", "devapp:app", "-p", "0")
    assert "dev reload" not in result.stdout


# -- the watchers and the reload decision, without a server ------------------------------------


def settle(watcher: watch.Watcher) -> set[str]:
    """What the watcher reports, asked when the polling one scans next."""
    return watcher.changes(getattr(watcher, "next_scan", 0.0))


@pytest.fixture(params=["inotify", "polling"])
def any_watcher(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[watch.Watcher]:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("A = 1\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / ".git").mkdir()
    (tmp_path / "venv").mkdir()
    (tmp_path / "venv" / "pyvenv.cfg").write_text("home = /usr\n")
    cls = InotifyWatcher if request.param == "inotify" else PollingWatcher
    watcher = cls(str(tmp_path))
    yield watcher
    watcher.close()


def test_watchers_see_create_modify_rename_delete_and_skip_the_rest(
    any_watcher: watch.Watcher, tmp_path: Path
) -> None:
    module = tmp_path / "pkg" / "mod.py"
    assert any_watcher.files == 1
    module.write_text("A = 22\n")
    assert settle(any_watcher) == {str(module)}
    (tmp_path / "new.py").write_text("B = 1\n")
    (tmp_path / "__pycache__" / "x.py").write_text("")
    (tmp_path / ".git" / "y.py").write_text("")
    (tmp_path / "venv" / "z.py").write_text("")
    (tmp_path / "notes.txt").write_text("")
    assert settle(any_watcher) == {str(tmp_path / "new.py")}
    (tmp_path / "new.py").rename(tmp_path / "renamed.py")
    assert settle(any_watcher) == {str(tmp_path / "new.py"), str(tmp_path / "renamed.py")}
    module.unlink()
    assert settle(any_watcher) == {str(module)}
    (tmp_path / "sub").mkdir()
    settle(any_watcher)
    (tmp_path / "sub" / "deep.py").write_text("")
    assert str(tmp_path / "sub" / "deep.py") in settle(any_watcher)


def test_polling_stands_in_when_the_watch_limit_is_reached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(self: InotifyWatcher, root: str) -> set[str]:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(InotifyWatcher, "_watch_tree", refuse)
    watcher = open_watcher(str(tmp_path))
    assert isinstance(watcher, PollingWatcher)
    assert "raise the sysctl fs.inotify.max_user_watches" in caplog.text
