"""The answer a request stopped at a limit gets, built in-process: JSON only when Accept
prefers it, complete and closing; the alarm raises only while armed."""

from __future__ import annotations

import json

import pytest

from prefork.wsgi import limit_exceeded
from prefork.wsgi.limit_exceeded import LimitAlarm, LimitExceeded, answer, prefers_json
from tests.responses import parse_responses


@pytest.mark.parametrize(
    ("accept", "json_wanted"),
    [
        ("", False),
        ("*/*", False),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", False),
        ("application/json", True),
        ("application/json, text/plain, */*", True),
        ("text/html;q=0.5, application/json", True),
        ("application/json;q=0.4, text/html", False),
        ("application/json;q=oops", False),
    ],
)
def test_json_only_when_accept_prefers_it(accept: str, json_wanted: bool) -> None:
    assert prefers_json(accept) is json_wanted


def test_the_answer_is_complete_and_closes() -> None:
    raw = answer(limit_exceeded.cpu_time(60), "", b"Date: x\r\n")
    ((status, headers, body),) = parse_responses(raw)
    assert status == 504
    assert headers["Connection"] == "close" and "Retry-After" not in headers
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert b"more than 60 s of CPU time (limit_time_cpu)" in body
    raw = answer(limit_exceeded.memory(640 << 20), "application/json", b"Date: x\r\n")
    ((status, headers, body),) = parse_responses(raw)
    assert status == 503 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"]["limit"] == "limit_memory_hard"
    assert "640 MiB" in json.loads(body)["error"]["message"]


def test_the_alarm_raises_only_while_armed() -> None:
    alarm = LimitAlarm()
    first = limit_exceeded.real_time(2)
    alarm.ring(first)  # outside the application: recorded, not raised
    assert alarm.fired is first
    alarm.armed = True
    with pytest.raises(LimitExceeded):
        alarm.ring(limit_exceeded.cpu_time(1))
    assert alarm.fired is first  # the first limit is the one the worker exits for
