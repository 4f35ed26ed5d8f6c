"""dev_mode = reload in-process: Odoo's values, the watcher (inotify and polling), the
debounce, compile checks, the watched root."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from prefork.config import ConfigError
from prefork.config.loader import load_settings
from prefork.dev.reload import DEBOUNCE, CodeReload, compile_error
from prefork.dev.watch import PollingWatcher, app_root, open_watcher

SYNTAX_ERROR = "syntax error in"


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


def test_polling_waits_for_its_interval(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("")
    watcher = PollingWatcher(str(tmp_path), interval=1.0)
    (tmp_path / "a.py").write_text("A = 1\n")
    assert watcher.changes(watcher.next_scan - 0.5) == set()
    assert watcher.changes(watcher.next_scan) == {str(tmp_path / "a.py")}


def test_polling_stands_in_when_inotify_cannot_be_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "inotify_simple", None)  # import raises ImportError
    watcher = open_watcher(str(tmp_path))
    assert isinstance(watcher, PollingWatcher) and watcher.fileno() == -1
    assert "inotify_simple cannot be imported" in caplog.text


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
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
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
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
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
        load_settings(
            environ={
                "PREFORK_WORKERS": "2",
                "PREFORK_PRELOAD_APP": "True",
                "PREFORK_DEV_MODE": "reload",
            }
        )
    threaded = load_settings(environ={"PREFORK_PRELOAD_APP": "True", "PREFORK_DEV_MODE": "all"})
    assert threaded.settings.dev_reload


def test_a_reload_removes_the_changed_files_cached_bytecode(tmp_path: Path) -> None:
    """Cached bytecode is trusted while the source keeps its size and its mtime in whole
    seconds: an edit within that second must not import the old code."""
    import py_compile

    path = tmp_path / "m.py"
    path.write_text("A = 1\n")
    compiled = py_compile.compile(str(path))
    assert compiled is not None
    cached = Path(compiled)
    feed = FeedWatcher()
    reload = CodeReload(feed, str(tmp_path))
    feed.next = {str(path)}
    reload.due(1.0)
    assert cached.exists()  # not before the reload is decided
    assert reload.due(2.0) == [str(path)]
    assert not cached.exists()
