"""Secrets in-process: the forms a secret is shown in, and the webhook logged without
its token."""

from __future__ import annotations

import logging
import time

import pytest

from prefork.config.secrets import shown, url_host_only, without_password
from prefork.ops import webhook


def test_shown_forms() -> None:
    assert shown("session_secret", "abc") == "********"
    assert shown("session_secret", "") == "(empty)"
    assert shown("workers", 4) == "4"
    assert without_password("postgresql://u:p@ss@h/db") == "postgresql://u:********@h/db"
    assert without_password("postgresql://u@h/db") == "postgresql://u@h/db"
    assert (
        without_password("postgresql://h/db?user=u&password=p1&sslmode=require")
        == "postgresql://h/db?user=u&password=********&sslmode=require"
    )
    assert (
        without_password("host=h password='a b\\' c' dbname=x")
        == "host=h password=******** dbname=x"
    )
    assert url_host_only("https://hooks.example.com") == "https://hooks.example.com"
    assert url_host_only("http://h:8080/x?t=1") == "http://h:8080/********"
    assert url_host_only("not a url") == "********"


def test_the_webhook_is_logged_without_its_token(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(webhook, "ATTEMPTS", 1)
    caplog.set_level(logging.DEBUG, logger="prefork.master")
    hook = webhook.Webhook("http://bot:hook-pass@127.0.0.1:1/services/tok-3c4d")
    hook.send({"event": "raised"})
    deadline = time.monotonic() + 10
    while "gave up" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "alert webhook http://********@127.0.0.1:1/********: gave up" in caplog.text
    assert "hook-pass" not in caplog.text and "tok-3c4d" not in caplog.text
