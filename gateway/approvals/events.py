"""A fan-out of approval events to live subscribers (the admin API's event stream).

Publishing never waits: each subscriber has a bounded buffer, and a subscriber that falls that far
behind is dropped (its channel ends) rather than slowing down the gateway or growing memory. A
dropped event-stream client reconnects and lists what it missed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import trio

from gateway.approvals.models import Grant, Review

SUBSCRIBER_BUFFER = 256


@dataclass(frozen=True, slots=True)
class ApprovalEvent:
    """``kind`` is ``review_requested``, ``review_voted`` (an approval short of the minimum),
    ``review_approved``, ``review_denied``, ``review_timed_out``, ``review_cancelled``,
    ``grant_requested``, ``grant_approved``, ``grant_denied``, ``grant_revoked`` or
    ``grant_expired``."""

    kind: str
    item: Review | Grant

    @property
    def requester(self) -> str:
        return self.item.requester


class EventHub:
    def __init__(self, buffer: int = SUBSCRIBER_BUFFER) -> None:
        self._buffer = buffer
        self._subscribers: set[trio.MemorySendChannel[ApprovalEvent]] = set()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @contextmanager
    def subscribe(self) -> Iterator[trio.MemoryReceiveChannel[ApprovalEvent]]:
        send, receive = trio.open_memory_channel[ApprovalEvent](self._buffer)
        self._subscribers.add(send)
        try:
            with receive:
                yield receive
        finally:
            self._subscribers.discard(send)
            send.close()

    def publish(self, event: ApprovalEvent) -> None:
        for send in list(self._subscribers):
            try:
                send.send_nowait(event)
            except trio.WouldBlock:
                self._subscribers.discard(send)
                send.close()  # the subscriber sees the end of its stream
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.discard(send)
