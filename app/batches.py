"""Batch delivery of the events topic: Faust's consumer without its per-message hand-off.

Faust moves every record through ``Consumer._drain_messages`` → ``Conductor.on_message`` → a
channel queue → ``Stream.__aiter__``, with tasks and event-loop turns per message
(``Service.wait_first`` wraps each delivery in futures): on this hardware a Faust agent that only
iterates its stream tops out at a few thousand messages/s, well below what the aggregation
itself costs (docs/processing.md). The aggregation wants records a fetched batch at a time
anyway, so for topics with an :class:`Inbox` the drain hands each fetched batch over whole;
every other topic keeps Faust's normal path.

Everything else stays Faust's: the consumer group, assignment, table recovery before fetching
resumes, pausing, commit bookkeeping — a message is acked when the agent has finished its batch
(``Consumer.ack``), so offsets commit exactly as they would through a Stream — and Faust's
received-message metrics, counted per batch. On a rebalance Faust clears the inbox like its own
stream buffers (``flow_control.clear``); messages of an older consumer generation are dropped,
never acked.

No fetched record is ever lost on the way: after every rebalance each assigned inbox partition
is positioned explicitly (committed offset, or its first offset), every path that drops fetched
records seeks their partition back to the first one not delivered (:func:`plan_delivery`), and a
full inbox takes its partitions out of the fetch instead of blocking the drain for everyone.

Pinned with faust-streaming==0.15.3 (private consumer attributes) and covered by unit tests of
the delivery plan and the integration and fault tests (kills, rebalances, outages).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP, AppT, Message


class Inbox:
    """Fetched messages of one topic waiting for its agent, bounded: the drain waits for room."""

    def __init__(self, app: AppT, topic: str, max_buffered: int) -> None:
        self.app = app
        self.topic = topic
        self.max_buffered = max_buffered
        self._messages: deque[Message] = deque()
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        # Faust empties the queues it manages when a rebalance starts (flow_control.clear()).
        app.flow_control.manage_queue(self)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self._messages)

    def put(self, messages: Iterable[Message]) -> None:
        self._messages.extend(messages)
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
        self._ready.set()

    def clear(self) -> None:
        self._messages.clear()
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
            while self._messages and len(batch) < max_:
                message = self._messages.popleft()
                if message.generation_id == generation:
                    batch.append(message)
            if not self._messages:
                self._ready.clear()
            if len(self._messages) < self.max_buffered:
                self._room.set()
            if batch:
                return batch

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


def plan_delivery(offsets: Sequence[int], expected: int | None, *, deliverable: bool, sought: bool) -> Plan:
    """Decide a partition's fetched records, from their offsets alone.

    ``expected`` is the next offset the inbox wants (set when the partition was positioned after
    a rebalance, then moved past every delivered record); ``None`` when it is not positioned.
    ``sought`` says a seek ran while these records were being fetched, so they may come from a
    position that seek abandoned.

    Records below ``expected`` were delivered already (or precede the committed offset) and are
    skipped. Records that cannot be delivered now (a rebalance holds the flow, the partition is
    paused) are dropped and the partition is sought back to ``expected``: the fetch position has
    moved past them, and nothing else would bring them back. A fetch that overlapped a seek and
    starts past ``expected`` comes from the old position: delivering it would skip records.
    """
    if expected is None:
        return Plan(deliver=deliverable)
    skip = 0
    while skip < len(offsets) and offsets[skip] < expected:
        skip += 1
    if skip == len(offsets):
        return Plan(skip=skip, deliver=False)
    if not deliverable or (sought and offsets[skip] > expected):
        return Plan(skip=skip, deliver=False, rewind_to=expected)
    return Plan(skip=skip)


class BatchConsumer(aiokafka_driver.Consumer):
    """Faust's aiokafka consumer; records of topics with an inbox go there a batch at a time."""

    inboxes: ClassVar[dict[str, Inbox]] = {}
    _seeks = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Next offset each inbox partition wants; set for every assigned partition after each
        #: rebalance (:meth:`perform_seek`), moved forward by delivery.
        self._next_offset: dict[TP, int] = {}
        #: Where each inbox partition was positioned after the last rebalance.
        self._start_offset: dict[TP, int] = {}

    async def _drain_messages(self, fetcher: Any) -> None:
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                seeks = self._seeks
                records, active = await self._wait_next_records(1.0)
                await self.sleep(0)
                if records and not self.should_stop:
                    await self._deliver(records, active, seeks)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    def _get_active_partitions(self) -> set[TP]:
        """Faust's active partitions less those whose inbox is full: their records stay in the
        fetcher until the agent made room, while every other partition keeps flowing (a sink
        waiting for Redis must not stop the aggregation)."""
        active = super()._get_active_partitions()
        held = {tp for tp in active if (box := self.inboxes.get(tp.topic)) is not None and box.full}
        return active - held if held else active

    async def perform_seek(self) -> None:
        """After every rebalance Faust seeks the partitions that have a committed offset; every
        assigned inbox partition is then positioned explicitly — at its committed offset, or at
        its first offset when the group never committed one (aiokafka would otherwise leave it
        wherever an in-flight fetch moved it). Counted before and after, so a fetch that
        overlapped a seek can be told apart."""
        self._seeks += 1
        try:
            await super().perform_seek()
            await self._position_inbox_partitions()
        finally:
            self._seeks += 1

    async def _position_inbox_partitions(self) -> None:
        # Faust's perform_seek has just stored what the group committed: None or -1 (aiokafka
        # versions differ) when nothing was.
        committed = {tp: offset for tp, offset in self._committed_offset.items() if offset and offset > 0}
        tps = [tp for tp in self.assignment() if tp.topic in self.inboxes]
        self._next_offset = {}
        self._start_offset = {}
        fresh = [tp for tp in tps if tp not in committed]
        first = await self.earliest_offsets(*fresh) if fresh else {}
        for tp in tps:
            offset = committed.get(tp) or first.get(tp) or 0
            await self.seek(tp, offset)
            self._next_offset[tp] = self._start_offset[tp] = offset

    def uncommitted(self, tp: TP) -> int | None:
        """Records of an inbox partition the group has not committed yet (``None`` for other
        topics): from the committed offset, not the fetch position, so a partition whose records
        were fetched but never processed shows its whole backlog."""
        if tp.topic not in self.inboxes or tp not in self._start_offset:
            return None
        highwater = self.highwater(tp)
        if highwater is None:
            return None
        committed = self._committed_offset.get(tp)
        base = committed if committed and committed > 0 else self._start_offset[tp]
        return max(0, highwater - base)

    async def _rewind(self, tp: TP, offset: int) -> None:
        if tp in self.assignment():
            await self.seek(tp, offset)

    async def _deliver(self, records: Mapping[TP, list[Any]], active: set[TP] | None, seeks: int) -> None:
        generation = self.app.consumer_generation_id
        commit_every = self._commit_every
        for tp, tp_records in records.items():
            deliverable = (
                self.flow_active
                and self.app.consumer_generation_id == generation
                and (active is None or tp in active or tp in self._buffered_partitions)
            )
            inbox = self.inboxes.get(tp.topic)
            if inbox is not None:
                plan = plan_delivery(
                    [r.offset for r in tp_records],
                    self._next_offset.get(tp),
                    deliverable=deliverable,
                    sought=self._seeks != seeks,
                )
                if plan.rewind_to is not None:
                    await self._rewind(tp, plan.rewind_to)
                if not plan.deliver:
                    continue
                self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                messages = await self._new_messages(tp, tp_records[plan.skip :])
                if messages:
                    self._next_offset[tp] = messages[-1].offset + 1
                    self._count_in(tp, messages)
                inbox.put(messages)
                self.app.monitor.stream_inbound_time[tp] = time.monotonic()
            elif deliverable:
                self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                for message in await self._new_messages(tp, tp_records):
                    await self.wait_first(self.callback(message), self.suspend_flow.wait())
            if commit_every is not None and self._n_acked >= commit_every:
                self._n_acked = 0
                await self.commit()

    def _count_in(self, tp: TP, messages: list[Message]) -> None:
        """What Faust's sensors record per message received (``on_message_in``), once per batch:
        per message, the Prometheus labels lookups alone cost a sixth of the worker's time."""
        n, last = len(messages), messages[-1].offset
        monitor: Any = self.app.monitor
        monitor.messages_received_total += n
        monitor.messages_received_by_topic[tp.topic] += n
        monitor.tp_read_offsets[tp] = last
        prometheus = getattr(monitor, "_metrics", None)  # faust.sensors.prometheus.FaustMetrics
        if prometheus is not None:
            prometheus.messages_received.inc(n)
            prometheus.messages_received_per_topics.labels(topic=tp.topic).inc(n)
            prometheus.messages_received_per_topics_partition.labels(
                topic=tp.topic, partition=tp.partition
            ).set(last)

    async def _new_messages(self, tp: TP, tp_records: list[Any]) -> list[Message]:
        """Faust's checks per record: skip what was read already, note offset gaps to commit."""
        read_offset = self._read_offset[tp]
        acks_enabled = self.app.topics.acks_enabled_for(tp.topic)
        messages: list[Message] = []
        for record in tp_records:
            offset = record.offset
            if read_offset is not None and offset < read_offset:
                continue
            if read_offset and offset - read_offset > 1 and acks_enabled:
                await self._add_gap(tp, read_offset + 1, offset)
            messages.append(self._to_message(tp, record))
            read_offset = offset
        if messages:
            self._read_offset[tp] = read_offset
        return messages


class BatchTransport(aiokafka_driver.Transport):
    Consumer = BatchConsumer


def install(app: AppT) -> None:
    """Use the batch-delivering consumer (before the app creates its consumer)."""
    app.transport = BatchTransport(app.conf.broker_consumer, app)


def inbox(app: AppT, topic: str, max_buffered: int) -> Inbox:
    """Deliver ``topic`` to the returned inbox instead of to Faust's streams."""
    box = BatchConsumer.inboxes[topic] = Inbox(app, topic, max_buffered)
    return box
