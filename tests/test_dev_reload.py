"""dev_mode = reload: real servers started from an application's directory, real edits.

The end-to-end tests wait on what the server logs and answers, never on time: an edit is
seen when the response changes, a refused reload when the log says so.
"""

from __future__ import annotations

import errno
import http.client
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from prefork.config import ConfigError
from prefork.config.loader import load_settings
from prefork.dev import watch
from prefork.dev.reload import DEBOUNCE, CodeReload, compile_error
from prefork.dev.watch import InotifyWatcher, PollingWatcher, app_root, open_watcher
from tests.conftest import PREFORK, SERVER_BUGS, Server, start_server
from tests.test_master import wait_for, workers_of

SYNTAX_ERROR = "syntax error in"
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


@pytest.fixture
def dev_server(tmp_path: Path, app_dir: Path) -> Iterator[type]:
    started: list[Server] = []

    class Factory:
        @staticmethod
        def start(*args: str, wait: bool = True) -> Server:
            server = start_server(tmp_path, "--app", "devapp:app", "--max-cron-threads", "0",
                                  *args, cwd=app_dir, wait=wait)
            started.append(server)
            return server

    yield Factory
    for server in started:
        server.stop()
    for server in started:
        for marker in SERVER_BUGS:
            assert marker not in server.log(), server.log()


def body(server: Server) -> bytes:
    status, _, content = server.get("/")
    assert status == 200
    return content


def wait_body(server: Server, expected: bytes) -> None:
    wait_for(lambda: answers(server, expected), 20,
             f"never answered {expected!r}; log:\n{server.log()}")


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
        dev_server: type, app_dir: Path) -> None:
    server = dev_server.start("--workers", "2", "--dev", "reload")
    server.wait_log(r"dev reload is on \(dev_mode = reload\): a change to one of the 1 Python "
                    r"file\(s\) under \S+project \(watched with inotify\) replaces the workers")
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
        dev_server: type, app_dir: Path) -> None:
    server = dev_server.start("--workers", "2", "--dev", "reload")
    assert body(server) == b"one"
    (app_dir / "devapp.py").write_text(app_source("two", prelude="missing_name\n"))
    server.wait_log(r"reload abandoned: http worker #\d of generation 2 could not start "
                    r"\(NameError: name 'missing_name' is not defined\); generation 1 keeps "
                    r"serving")
    assert server.proc.poll() is None
    assert body(server) == b"one"
    (app_dir / "devapp.py").write_text(app_source("two"))
    wait_body(server, b"two")  # the next change reloads again
    server.wait_log(r"reloading: starting 2 new worker\(s\) \(generation 3\)")


def test_a_hup_whose_workers_cannot_start_keeps_the_previous_generation(
        dev_server: type, app_dir: Path) -> None:
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


def test_preload_app_with_dev_reload_is_refused(dev_server: type) -> None:
    server = dev_server.start("--workers", "2", "--preload-app", "--dev", "all", wait=False)
    assert server.proc.wait(30) == 2
    assert ("prefork: error: dev_mode = all (from command line) cannot reload with "
            "preload_app (from command line)") in server.log()
    assert "Traceback" not in server.log()


# -- threaded mode -----------------------------------------------------------------------------


@pytest.mark.parametrize("watcher", ["inotify", "polling"])
def test_threaded_server_reexecutes_on_an_edit(dev_server: type, app_dir: Path,
                                               watcher: str) -> None:
    if watcher == "polling":
        (app_dir / "inotify_simple.py").write_text(NO_INOTIFY)
    server = dev_server.start("--dev", "reload")
    server.wait_log(rf"\(watched with {watcher}\) re-executes the threaded server")
    assert body(server) == b"one"
    (app_dir / "devapp.py").write_text(app_source("two"))
    wait_body(server, b"two")
    server.wait_log(r"(?s)dev reload: devapp.py changed: reloading the whole process.*"
                    r"re-executing")
    assert server.proc.poll() is None
    if watcher == "polling":
        assert "inotify_simple cannot be imported (inotify_simple is not installed here); " \
               "scanning the files every 1 s instead" in server.log()


def test_threaded_server_waits_for_a_fix_when_the_new_code_raises(
        dev_server: type, app_dir: Path) -> None:
    server = dev_server.start("--dev", "reload")
    (app_dir / "devapp.py").write_text(app_source("two", prelude="missing_name\n"))
    server.wait_log(r"dev reload: the application could not be imported \(traceback above\); "
                    r"waiting for a change under \S+project")
    assert server.proc.poll() is None
    (app_dir / "devapp.py").write_text(app_source("three"))
    wait_body(server, b"three")


# -- configuration and check -------------------------------------------------------------------


def run_prefork(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFORK_CONFIG", "PYTHONPATH")}
    return subprocess.run([PREFORK, *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=60)


@pytest.mark.parametrize("value", ["reload", "xml", "all, pudb", "reload,qweb,werkzeug"])
def test_odoo_conf_dev_mode_values_load(tmp_path: Path, value: str) -> None:
    conf = tmp_path / "odoo.conf"
    conf.write_text(f"[options]\nworkers = 2\ndev_mode = {value}\n")
    loaded = load_settings(config_path=str(conf), environ={})
    assert loaded.settings.dev_mode == ",".join(v.strip() for v in value.split(","))
    assert loaded.settings.dev_reload == ("reload" in value or "all" in value)
    assert not loaded.warnings


def test_dev_mode_is_off_by_default() -> None:
    settings = load_settings(environ={}).settings
    assert settings.dev_mode == "" and not settings.dev_reload


def test_an_unknown_dev_mode_value_names_file_line_key_and_values(tmp_path: Path,
                                                                  app_dir: Path) -> None:
    conf = tmp_path / "odoo.conf"
    conf.write_text("[options]\nworkers = 2\n\ndev_mode = reload,hot\n")
    result = run_prefork(app_dir, "check", "-c", str(conf))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"prefork: error: {conf}:4: option 'dev_mode': expected a comma-separated list of "
        "all, reload, qweb, xml, werkzeug, access, replica, pdb, ipdb, pudb, wdb, got "
        "'reload,hot'")


def test_check_warns_that_dev_reload_is_on(app_dir: Path) -> None:
    result = run_prefork(app_dir, "check", "--app", "devapp:app", "--workers", "2", "-p", "0",
                         "--dev", "reload,xml")
    out = " ".join(result.stdout.split())
    assert (f"warning: dev reload is on (dev_mode = reload,xml): a change to one of the 1 "
            f"Python file(s) under {app_dir} replaces the workers gracefully") in out
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
        any_watcher: watch.Watcher, tmp_path: Path) -> None:
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


def test_polling_waits_for_its_interval(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("")
    watcher = PollingWatcher(str(tmp_path), interval=1.0)
    (tmp_path / "a.py").write_text("A = 1\n")
    assert watcher.changes(watcher.next_scan - 0.5) == set()
    assert watcher.changes(watcher.next_scan) == {str(tmp_path / "a.py")}


def test_polling_stands_in_when_inotify_cannot_be_imported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "inotify_simple", None)  # import raises ImportError
    watcher = open_watcher(str(tmp_path))
    assert isinstance(watcher, PollingWatcher) and watcher.fileno() == -1
    assert "inotify_simple cannot be imported" in caplog.text


def test_polling_stands_in_when_the_watch_limit_is_reached(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def refuse(self: InotifyWatcher, root: str) -> set[str]:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(InotifyWatcher, "_watch_tree", refuse)
    watcher = open_watcher(str(tmp_path))
    assert isinstance(watcher, PollingWatcher)
    assert "raise the sysctl fs.inotify.max_user_watches" in caplog.text


class FeedWatcher:
    """A watcher the test tells what changed."""

    method = "test"
    files = 0

    def __init__(self) -> None:
        self.next: set[str] = set()

    def fileno(self) -> int:
        return -1

    def changes(self, now: float) -> set[str]:
        changed, self.next = self.next, set()
        return changed

    def close(self) -> None:
        pass


def test_reload_waits_for_quiet_and_logs_a_syntax_error_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "prefork.dev")
    feed = FeedWatcher()
    reload = CodeReload(feed, str(tmp_path))
    good, other = tmp_path / "good.py", tmp_path / "other.py"
    good.write_text("A = 1\n")
    feed.next = {str(good)}
    assert reload.due(10.0) == []  # a change: wait for quiet
    feed.next = {str(good)}
    assert reload.due(10.0 + DEBOUNCE / 2) == []  # another: wait again
    assert reload.due(10.0 + DEBOUNCE) == []
    assert reload.due(10.0 + DEBOUNCE * 2) == [str(good)]
    assert reload.due(20.0) == []

    good.write_text("def broken(:\n")
    feed.next = {str(good)}
    reload.due(30.0)
    assert reload.due(31.0) == []
    other.write_text("B = 2\n")
    feed.next = {str(other)}
    reload.due(40.0)
    assert reload.due(41.0) == []  # still broken: an edit elsewhere does not reload past it
    assert caplog.text.count(SYNTAX_ERROR) == 1
    assert "other.py changed; not reloading while good.py does not compile" in caplog.text
    good.write_text("A = 3\n")
    feed.next = {str(good)}
    reload.due(50.0)
    assert reload.due(51.0) == [str(good)]


def test_compile_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("x = 1\nif x\n")
    assert compile_error(str(path)) == f"{SYNTAX_ERROR} {path}, line 2: expected ':'"
    path.write_text("x = '\\d'\n")  # a SyntaxWarning only
    assert compile_error(str(path)) is None
    assert compile_error(str(tmp_path / "gone.py")) is None


def test_the_watched_root_is_the_application_modules_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "src" / "shop").mkdir(parents=True)
    (tmp_path / "src" / "shop" / "__init__.py").write_text("")
    (tmp_path / "src" / "single.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    monkeypatch.chdir(tmp_path)
    assert app_root("shop.wsgi:app") == str(tmp_path / "src")
    assert app_root("single:app") == str(tmp_path / "src")
    assert app_root("") == str(tmp_path)  # the demo
    assert app_root("no_such_module:app") == str(tmp_path)
    assert app_root("pytest:main") == str(tmp_path)  # installed: not the developer's code


def test_preload_app_with_dev_reload_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot reload with preload_app"):
        load_settings(environ={"PREFORK_WORKERS": "2", "PREFORK_PRELOAD_APP": "True",
                               "PREFORK_DEV_MODE": "reload"})
    threaded = load_settings(environ={"PREFORK_PRELOAD_APP": "True", "PREFORK_DEV_MODE": "all"})
    assert threaded.settings.dev_reload



def test_a_reload_removes_the_changed_files_cached_bytecode(tmp_path: Path) -> None:
    """Cached bytecode is trusted while the source keeps its size and its mtime in whole
    seconds: an edit within that second must not import the old code."""
    import py_compile

    path = tmp_path / "m.py"
    path.write_text("A = 1\n")
    cached = Path(py_compile.compile(str(path)))
    feed = FeedWatcher()
    reload = CodeReload(feed, str(tmp_path))
    feed.next = {str(path)}
    reload.due(1.0)
    assert cached.exists()  # not before the reload is decided
    assert reload.due(2.0) == [str(path)]
    assert not cached.exists()
