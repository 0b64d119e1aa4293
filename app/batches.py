"""Batch delivery of the events topic: the inbox a batch-delivering consumer fills, and the rule
for what it delivers.

Faust moves every record through its consumer's drain → ``Conductor.on_message`` → a channel
queue → ``Stream.__aiter__``, with tasks and event-loop turns per message: on this hardware a
Faust agent that only iterates its stream tops out at a few thousand messages/s, well below what
the aggregation itself costs (docs/processing.md). The aggregation wants records a fetched batch
at a time anyway, so for topics with an :class:`Inbox` the consumer
(:class:`app.internals.BatchConsumer`, built on Faust's private consumer names) hands each
fetched batch over whole; every other topic keeps Faust's normal path.

Everything else stays Faust's: the consumer group, assignment, table recovery before fetching
resumes, pausing, commit bookkeeping — a message is acked when the agent has finished its batch
(``Consumer.ack``), so offsets commit exactly as they would through a Stream. On a rebalance
Faust clears the inbox like its own stream buffers (``flow_control.clear``); messages of an older
consumer generation are dropped, never acked.

No fetched record is ever lost on the way: after every rebalance each assigned inbox partition
is positioned explicitly (committed offset, or its first offset), every path that drops fetched
records seeks their partition back to the first one not delivered (:func:`plan_delivery`), and a
full inbox takes its partitions out of the fetch instead of blocking the drain for everyone.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from faust.types import AppT, Message


class Inbox:
    """Fetched messages of one topic waiting for its agent, bounded: the drain waits for room."""

    def __init__(self, app: AppT, topic: str, max_buffered: int) -> None:
        self.app = app
        self.topic = topic
        self.max_buffered = max_buffered
        self._messages: deque[Message] = deque()
        #: ``(arrival time, messages of that arrival still here)``, oldest first.
        self._arrivals: deque[tuple[float, int]] = deque()
        #: How long the first message of the batch last taken waited here (the batch linger,
        #: and any queueing behind the batch before it).
        self.waited_s = 0.0
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        # Faust empties the queues it manages when a rebalance starts (flow_control.clear()).
        app.flow_control.manage_queue(self)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self._messages)

    def put(self, messages: Iterable[Message]) -> None:
        before = len(self._messages)
        self._messages.extend(messages)
        if len(self._messages) > before:
            self._arrivals.append((time.monotonic(), len(self._messages) - before))
        if self._messages:
            self._ready.set()
        if len(self._messages) >= self.max_buffered:
            self._room.clear()

    @property
    def full(self) -> bool:
        return not self._room.is_set()

    def requeue(self, messages: list[Message]) -> None:
        """Put a batch back in front, to be taken again in the same order."""
        self._messages.extendleft(reversed(messages))
        if messages:
            self._arrivals.appendleft((time.monotonic(), len(messages)))
        self._ready.set()

    def clear(self) -> None:
        self._messages.clear()
        self._arrivals.clear()
        self._ready.clear()
        self._room.set()

    async def take(self, max_: int, linger_s: float) -> list[Message]:
        """Up to ``max_`` messages of the current consumer generation, as soon as any are there
        plus at most ``linger_s`` for more (a busy stream fills batches without lingering)."""
        flow_control = self.app.flow_control
        while True:
            await self._ready.wait()
            if len(self._messages) < max_ and linger_s > 0:
                await asyncio.sleep(linger_s)
            if not flow_control.is_active():  # a rebalance: Faust clears the inbox on resume
                await flow_control.acquire()
                continue
            batch: list[Message] = []
            generation = self.app.consumer_generation_id
            first_arrival = self._arrivals[0][0] if self._arrivals else time.monotonic()
            taken = 0
            while self._messages and len(batch) < max_:
                message = self._messages.popleft()
                taken += 1
                if message.generation_id == generation:
                    batch.append(message)
            self._forget_arrivals(taken)
            if not self._messages:
                self._ready.clear()
            if len(self._messages) < self.max_buffered:
                self._room.set()
            if batch:
                self.waited_s = time.monotonic() - first_arrival
                return batch

    def _forget_arrivals(self, taken: int) -> None:
        while taken and self._arrivals:
            at, count = self._arrivals[0]
            if count > taken:
                self._arrivals[0] = (at, count - taken)
                return
            self._arrivals.popleft()
            taken -= count

    def ack(self, messages: Iterable[Message]) -> None:
        """The batch's effects are stored: its offsets may be committed."""
        consumer = self.app.consumer
        generation = self.app.consumer_generation_id
        for message in messages:
            if message.generation_id == generation:
                consumer.ack(message)


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do with one partition's fetched records: hand ``records[skip:]`` to the inbox
    (``deliver``), or none of them and seek the partition back to ``rewind_to``."""

    skip: int = 0
    deliver: bool = True
    rewind_to: int | None = None


def plan_delivery(
    offsets: Sequence[int],
    expected: int | None,
    *,
    deliverable: bool,
    sought: bool,
    confirmed_gap: int | None = None,
) -> Plan:
    """Decide a partition's fetched records, from their offsets alone.

    ``expected`` is the next offset the inbox wants (set when the partition was positioned after
    a rebalance, then moved past every delivered record); ``None`` when it is not positioned.
    ``sought`` says a seek ran while these records were being fetched, so they may come from a
    position that seek abandoned.

    Records below ``expected`` were delivered already (or precede the committed offset) and are
    skipped. Records that cannot be delivered now (a rebalance holds the flow, the partition is
    paused) are dropped and the partition is sought back to ``expected``: the fetch position has
    moved past them, and nothing else would bring them back.

    A fetch that starts past ``expected`` is not delivered either, but fetched again from
    ``expected``: it may come from a position a seek abandoned, or one moved past records that
    never reached the inbox, and delivering it would mark the records in between as a gap the
    group then commits past, unprocessed. Only when a fetch from ``expected`` starts at that same
    later offset (``confirmed_gap``) is the gap in the log itself (compaction, transaction
    markers), and delivered.
    """
    if expected is None:
        return Plan(deliver=deliverable)
    skip = 0
    while skip < len(offsets) and offsets[skip] < expected:
        skip += 1
    if skip == len(offsets):
        return Plan(skip=skip, deliver=False)
    if not deliverable:
        return Plan(skip=skip, deliver=False, rewind_to=expected)
    if offsets[skip] > expected and (sought or offsets[skip] != confirmed_gap):
        return Plan(skip=skip, deliver=False, rewind_to=expected)
    return Plan(skip=skip)
