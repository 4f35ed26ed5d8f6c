"""The realtime pieces that need no server: the hub's hold-and-merge and eager sends."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from prefork.bus.store import Message, rows_to_messages
from prefork.realtime.hub import Hub, Subscriber
from prefork.realtime.websocket import send_eagerly


def _messages(*ids: int, channel: str = "c") -> list[Message]:
    return rows_to_messages([(i, channel, f'{{"n":{i}}}') for i in ids])


def test_history_and_live_messages_merge_without_loss_or_duplicate() -> None:
    hub, got = Hub(), list[int]()
    subscriber = Subscriber(lambda batch: got.extend(m.id for m in batch))
    hub.join(subscriber, ["c"], last=3)
    hub.publish(_messages(6, 7))  # delivered while the history is read: held
    assert got == []
    subscriber.release(_messages(4, 5, 6))  # the history overlaps what was held
    hub.publish(_messages(7, 8))  # an id seen already is not sent again
    assert got == [4, 5, 6, 7, 8]
    hub.leave(subscriber)
    hub.publish(_messages(9))
    assert got == [4, 5, 6, 7, 8] and hub.subscribers == 0


def test_items_are_the_frame_elements() -> None:
    (message,) = _messages(12)
    assert message.item == '{"id":12,"message":{"n":12}}'


def test_send_eagerly_completes_without_a_task_or_finishes_later() -> None:
    async def scenario() -> list[str]:
        sent: list[str] = []
        writable = asyncio.Event()
        writable.set()

        async def send(text: str) -> None:
            await writable.wait()
            sent.append(text)

        assert send_eagerly(send("now")) is None and sent == ["now"]
        writable.clear()  # the client's socket is full
        blocked = send_eagerly(send("later"))
        assert blocked is not None and sent == ["now"]
        task = asyncio.ensure_future(blocked)
        await asyncio.sleep(0.01)
        assert sent == ["now"]
        writable.set()
        await task
        return sent

    assert asyncio.run(scenario()) == ["now", "later"]


def test_a_blocked_send_is_cancelled_cleanly() -> None:
    async def scenario() -> bool:
        never = asyncio.Event()

        async def send() -> None:
            await never.wait()

        blocked = send_eagerly(send())
        assert blocked is not None
        task = asyncio.ensure_future(blocked)
        await asyncio.sleep(0.01)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(scenario())


def test_cookie_parsing_and_origin_check() -> None:
    from prefork.realtime.auth import same_site
    from prefork.wsgi.cookies import parse_cookies

    cookies = parse_cookies("theme=dark; session_id=abc123")
    assert cookies == {"theme": "dark", "session_id": "abc123"}
    assert parse_cookies('bad"cookie') == {}
    assert same_site({"host": "example.com:8072", "origin": "https://example.com"}, False)
    assert same_site({"host": "example.com"}, False)  # no Origin: not a browser
    assert not same_site({"host": "example.com", "origin": "https://evil.example"}, False)
    forwarded = {
        "host": "127.0.0.1:8072",
        "x-forwarded-host": "example.com",
        "origin": "https://example.com",
    }
    assert same_site(forwarded, True) and not same_site(forwarded, False)
    assert same_site({"host": "[::1]:8072", "origin": "http://[::1]:8069"}, False)


def test_the_rate_limit_counts_as_odoos() -> None:
    """10 at once, then the 11th only once the first is 10 x 0.2 s old: a token bucket
    would take one more after 0.2 s."""
    from prefork.realtime.protocol import RateLimit

    limit = RateLimit(10, 0.2)
    assert all(limit.allow(100 + n / 10) for n in range(10))  # 100.0 ... 100.9
    assert not limit.allow(101.0) and not limit.allow(101.95)
    assert limit.allow(102.0)  # the first of the burst (100.0) is 2 s old
    assert not limit.allow(102.05)  # the next oldest (100.1) is not
    assert limit.allow(102.15)


def test_client_messages_parse_or_are_ignored() -> None:
    import pytest

    from prefork.realtime.protocol import Ignored, parse_event, parse_subscription

    assert parse_event('{"event_name": "subscribe", "data": {"channels": ["a"]}}') == (
        "subscribe",
        {"channels": ["a"]},
    )
    assert parse_subscription({"channels": ["a", ["db", "res.partner", 7]], "last": 4}) == (
        ["a", '["db","res.partner",7]'],
        4,
    )
    assert parse_subscription({"channels": [], "last": None}) == ([], 0)
    for text in (
        None,
        "",
        "nope",
        "[]",
        '{"data": 1}',
        '{"event_name": 5}',
        "[" * 100_000 + "]" * 100_000,
    ):
        with pytest.raises(Ignored):
            parse_event(text)
    data: object
    for data in (
        "x",
        ["a"],
        None,
        {"channels": 5},
        {"channels": ["a"], "last": "abc"},
        {"channels": ["a"], "last": True},
        {"channels": ["a"], "last": -1},
        {"channels": [{"a": 1}]},
        {"channels": [[]]},
        {"channels": [[1.5]]},
    ):
        with pytest.raises(Ignored):
            parse_subscription(data)


def test_channel_rule_without_and_with_a_hook(tmp_path: Path) -> None:
    from prefork.config.settings import Settings
    from prefork.realtime.auth import Anonymous, Gate

    record, spelled = '["db","res.partner",7]', "a"
    asked = [spelled, record, "[not-json"]
    where: dict[str, Any] = {
        "session_store": "memory",
        "session_secret": "k",
        "data_dir": str(tmp_path),
    }
    plain = Gate(Settings(**where))
    assert asyncio.run(plain.allowed(Anonymous(), asked)) == ["a", "broadcast"]
    assert asyncio.run(plain.allowed("signed-in", asked)) == ["a", "broadcast"]
    hooked = Gate(Settings(**where, bus_channels="tests.apps.busapp:channels"))
    assert asyncio.run(hooked.allowed(Anonymous(), asked)) == ["a", "broadcast"]
    assert asyncio.run(hooked.allowed("partner", asked)) == [*asked, "broadcast"]
    assert asyncio.run(hooked.allowed("visitor", asked)) == ["a", "broadcast"]
