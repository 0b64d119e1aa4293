"""The push stream's pure parts: event-id order and the bounded subscriber queue."""

from __future__ import annotations

import asyncio

import pytest

from api.push import DROPPED, Subscription, entry_ms, id_after, valid_id


@pytest.mark.parametrize(
    ("a", "b", "after"),
    [
        ("2-0", "1-0", True),
        ("1-1", "1-0", True),
        ("1-0", "1-0", False),
        ("1-0", "1-1", False),
        ("10-0", "9-99", True),  # numeric, not lexical
        ("1700000000000-5", "1700000000000", True),
    ],
)
def test_id_after(a: str, b: str, after: bool) -> None:
    assert id_after(a, b) is after


@pytest.mark.parametrize(
    ("text", "ok"),
    [("1-0", True), ("1700000000000-12", True), ("5", True), ("", False), ("-1", False), ("1-x", False)],
)
def test_valid_id(text: str, ok: bool) -> None:
    assert valid_id(text) is ok


def test_entry_ms_is_the_time_redis_appended_it() -> None:
    assert entry_ms("1700000000123-7") == 1_700_000_000_123


async def test_a_full_queue_drops_the_subscriber_with_one_clear_marker() -> None:
    sub = Subscription("1m", asyncio.Queue(3))
    assert all(sub.offer((f"{i}-0", b"{}")) for i in range(3))
    assert not sub.offer(("3-0", b"{}"))
    assert sub.dropped
    assert sub.queue.qsize() == 1 and sub.queue.get_nowait() is DROPPED
    assert not sub.offer(("4-0", b"{}"))  # nothing more once dropped
    assert sub.queue.empty()
