"""The realtime pieces that need no server: the hub's hold-and-merge and eager sends."""

from __future__ import annotations

import asyncio

from prefork.bus.store import Message, rows_to_messages
from prefork.realtime.hub import Hub, Subscriber
from prefork.realtime.websocket import send_eagerly


def _messages(*ids: int, channel: str = "c") -> list[Message]:
    return rows_to_messages([(i, channel, f'{{"n":{i}}}') for i in ids])


def test_history_and_live_messages_merge_without_loss_or_duplicate() -> None:
    hub, got = Hub(), []
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
    forwarded = {"host": "127.0.0.1:8072", "x-forwarded-host": "example.com",
                 "origin": "https://example.com"}
    assert same_site(forwarded, True) and not same_site(forwarded, False)
    assert same_site({"host": "[::1]:8072", "origin": "http://[::1]:8069"}, False)
