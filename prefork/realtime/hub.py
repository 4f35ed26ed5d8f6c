"""Who is subscribed to what, and the fan-out of new messages to them.

A subscriber joins before its history is read from the database and holds back what the
dispatcher delivers meanwhile; the two are merged by id, so a message committed while the
history query runs is neither lost nor sent twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prefork.bus.store import Message

Sink = Callable[[list[Message]], None]


class Subscriber:
    """One client's subscription; `sink` receives new messages in id order, never blocks."""

    __slots__ = ("channels", "held", "last", "sink")

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.channels: frozenset[str] = frozenset()
        self.last = 0
        self.held: list[Message] | None = None  # while the history is being read

    def deliver(self, messages: list[Message]) -> None:
        if self.held is not None:
            self.held.extend(messages)
            return
        fresh = [m for m in messages if m.id > self.last]
        if fresh:
            self.last = fresh[-1].id
            self.sink(fresh)

    def release(self, history: list[Message]) -> None:
        """End the hold: send the history, then what arrived while it was read."""
        held, self.held = self.held or [], None
        self.deliver(history)
        self.deliver(sorted(held, key=lambda m: m.id))


class Hub:
    def __init__(self) -> None:
        self._by_channel: dict[str, set[Subscriber]] = {}
        self.subscribers = 0

    def join(self, subscriber: Subscriber, channels: Iterable[str], last: int) -> None:
        """Subscribe (replacing earlier channels) and hold deliveries until release()."""
        self.leave(subscriber)
        subscriber.channels = frozenset(channels)
        subscriber.last = last
        subscriber.held = []
        for channel in subscriber.channels:
            self._by_channel.setdefault(channel, set()).add(subscriber)
        self.subscribers += 1

    def leave(self, subscriber: Subscriber) -> None:
        if not subscriber.channels:
            return
        for channel in subscriber.channels:
            members = self._by_channel.get(channel)
            if members is not None:
                members.discard(subscriber)
                if not members:
                    del self._by_channel[channel]
        subscriber.channels = frozenset()
        self.subscribers -= 1

    def publish(self, messages: list[Message]) -> None:
        """Fan out messages (in id order): one call per subscriber with all of its own."""
        batches: dict[Subscriber, list[Message]] = {}
        for message in messages:
            for subscriber in self._by_channel.get(message.channel, ()):
                batches.setdefault(subscriber, []).append(message)
        for subscriber, batch in batches.items():
            subscriber.deliver(batch)
