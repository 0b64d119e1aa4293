"""The events topic's inbox: batches in order, bounded, and nothing from a stale generation."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from faust.types import TP, Message
from prometheus_client import CollectorRegistry, Histogram

from app import internals
from app.batches import Inbox

TOPIC = "events"


@dataclass
class _FlowControl:
    """The calls the inbox makes on Faust's flow control (mode's FlowControlEvent)."""

    active: bool = True
    managed: list[Any] = field(default_factory=list)
    resumed: asyncio.Event = field(default_factory=asyncio.Event)

    def manage_queue(self, queue: Any) -> None:
        self.managed.append(queue)

    def is_active(self) -> bool:
        return self.active

    async def acquire(self) -> None:
        if not self.active:
            await self.resumed.wait()

    def resume(self) -> None:
        self.active = True
        self.resumed.set()


@dataclass
class _Consumer:
    acked: list[int] = field(default_factory=list)

    def ack(self, message: Message) -> bool:
        self.acked.append(message.offset)
        return True


@dataclass
class _App:
    consumer_generation_id: int = 1
    flow_control: _FlowControl = field(default_factory=_FlowControl)
    consumer: _Consumer = field(default_factory=_Consumer)


def _messages(offsets: range, generation: int = 1, partition: int = 0) -> list[Message]:
    return [
        Message(
            TOPIC,
            partition,
            offset,
            0.0,
            0,
            [],
            None,
            b"{}",
            None,
            tp=TP(TOPIC, partition),
            generation_id=generation,
        )
        for offset in offsets
    ]


def _inbox(max_buffered: int = 100) -> tuple[_App, Inbox]:
    app = _App()
    return app, Inbox(app, TOPIC, max_buffered)  # type: ignore[arg-type]


def _offsets(messages: list[Message]) -> list[int]:
    return [m.offset for m in messages]


async def test_batches_come_out_in_order_and_at_most_max() -> None:
    _, box = _inbox()
    box.put(_messages(range(10)))
    assert _offsets(await box.take(4, 0)) == [0, 1, 2, 3]
    assert _offsets(await box.take(100, 0)) == [4, 5, 6, 7, 8, 9]
    assert len(box) == 0


async def test_take_waits_for_records_and_lingers_for_more() -> None:
    _, box = _inbox()
    taker = asyncio.create_task(box.take(100, 0.05))
    await asyncio.sleep(0.01)
    assert not taker.done()
    box.put(_messages(range(3)))
    await asyncio.sleep(0.01)
    box.put(_messages(range(3, 5)))  # arrives within the linger: same batch
    assert _offsets(await asyncio.wait_for(taker, 1)) == [0, 1, 2, 3, 4]


async def test_the_wait_is_the_first_taken_record_s_time_in_the_inbox() -> None:
    """What a record waits before its batch is folded: one freshness stage the worker reports."""
    _, box = _inbox()
    box.put(_messages(range(3)))
    await asyncio.sleep(0.2)
    box.put(_messages(range(3, 6)))
    await box.take(2, 0)
    assert 0.2 <= box.waited_s < 5
    await box.take(2, 0)  # offset 2 (first arrival), then 3 (the second)
    assert 0.2 <= box.waited_s < 5
    await box.take(2, 0)  # offsets 4 and 5 arrived 0.2 s later
    assert box.waited_s < 0.2


async def test_records_of_an_older_consumer_generation_are_dropped() -> None:
    app, box = _inbox()
    box.put(_messages(range(3), generation=1))
    app.consumer_generation_id = 2
    box.put(_messages(range(3, 5), generation=2))
    assert _offsets(await box.take(100, 0)) == [3, 4]


async def test_ack_marks_only_the_current_generation() -> None:
    app, box = _inbox()
    old, new = _messages(range(2), generation=1), _messages(range(2, 4), generation=2)
    app.consumer_generation_id = 2
    box.ack(old + new)
    assert app.consumer.acked == [2, 3]


async def test_a_requeued_batch_is_taken_again_before_newer_records() -> None:
    _, box = _inbox()
    box.put(_messages(range(6)))
    batch = await box.take(3, 0)
    box.requeue(batch)
    assert _offsets(await box.take(100, 0)) == [0, 1, 2, 3, 4, 5]


async def test_the_inbox_is_bounded_and_makes_room_when_taken_from() -> None:
    _, box = _inbox(max_buffered=5)
    box.put(_messages(range(4)))
    assert not box.full
    box.put(_messages(range(4, 5)))
    assert box.full
    await box.take(2, 0)
    assert not box.full


async def test_a_rebalance_clears_it_through_faust_flow_control() -> None:
    app, box = _inbox(max_buffered=5)
    assert app.flow_control.managed == [box]
    box.put(_messages(range(5)))
    box.clear()
    assert len(box) == 0 and not box.full
    taker = asyncio.create_task(box.take(10, 0))
    await asyncio.sleep(0.01)
    assert not taker.done()  # nothing left to hand out
    taker.cancel()


async def test_nothing_is_handed_out_while_flow_control_is_suspended() -> None:
    app, box = _inbox()
    app.flow_control.active = False
    box.put(_messages(range(3)))
    taker = asyncio.create_task(box.take(10, 0))
    await asyncio.sleep(0.01)
    assert not taker.done()
    app.flow_control.resume()
    assert _offsets(await asyncio.wait_for(taker, 1)) == [0, 1, 2]


@pytest.mark.parametrize("values", [[], [0.5], [1.0, 2.0, 2.0, 7.5, 1e9], [0.0, 5.0, 5.0001, 10.0]])
def test_observe_many_equals_observing_one_by_one(values: list[float]) -> None:
    registry = CollectorRegistry()
    buckets = (1.0, 2.0, 5.0, 10.0)
    one = Histogram("one_by_one", "x", buckets=buckets, registry=registry)
    many = Histogram("many", "x", buckets=buckets, registry=registry)
    for v in values:
        one.observe(v)
    internals.observe_many(many, values)

    def samples(name: str) -> list[tuple[str, dict[str, str], float]]:
        return [
            (s.name.removeprefix(name), s.labels, s.value)
            for m in registry.collect()
            if m.name == name
            for s in m.samples
            if not s.name.endswith("_created")
        ]

    assert samples("many") == samples("one_by_one")
