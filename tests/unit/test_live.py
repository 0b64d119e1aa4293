"""The hand-off to the live mirror remembers how long changed windows have waited for it."""

from __future__ import annotations

import asyncio

from app.live import LiveChanged


async def test_the_wait_counts_from_the_first_change_not_the_last() -> None:
    changed = LiveChanged()
    changed.set()
    await asyncio.sleep(0.2)
    changed.set()  # a later batch: the mirror has still not run for the first one
    await asyncio.wait_for(changed.wait(), 1)
    assert 0.2 <= changed.clear() < 5


async def test_cleared_it_waits_for_the_next_change_and_counts_from_it() -> None:
    changed = LiveChanged()
    changed.set()
    changed.clear()
    waiter = asyncio.create_task(changed.wait())
    await asyncio.sleep(0.05)
    assert not waiter.done()
    assert changed.clear() == 0.0  # nothing pending
    changed.set()
    await asyncio.wait_for(waiter, 1)
    assert changed.clear() < 0.2
