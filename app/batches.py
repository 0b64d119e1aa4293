"""Batch delivery of the events topic: Faust's consumer without its per-message hand-off.

Faust moves every record through ``Consumer._drain_messages`` → ``Conductor.on_message`` → a
channel queue → ``Stream.__aiter__``, with tasks and event-loop turns per message
(``Service.wait_first`` wraps each delivery in futures): on this hardware a Faust agent that only
iterates its stream tops out at a few thousand messages/s, well below what the aggregation
itself costs (../shared/notes/faust-pitfalls.md). The aggregation wants records a fetched batch
at a time anyway, so for topics with an :class:`Inbox` the drain hands each fetched batch over
whole; every other topic keeps Faust's normal path.

Everything else stays Faust's: the consumer group, assignment, table recovery before fetching
resumes, pausing and seeking, commit bookkeeping — a message is acked when the agent has
finished its batch (``Consumer.ack``), so offsets commit exactly as they would through a Stream —
and Faust's received-message metrics, counted per batch. On a rebalance
Faust clears the inbox like its own stream buffers (``flow_control.clear``) and seeks back to
the committed offsets; messages of an older consumer generation are dropped, never acked.

Pinned with faust-streaming==0.15.3 (private consumer attributes) and covered by the
integration tests (recovery after SIGKILL, two workers with one killed).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable, Mapping
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

    async def wait_for_room(self) -> None:
        await self._room.wait()

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


class BatchConsumer(aiokafka_driver.Consumer):
    """Faust's aiokafka consumer; records of topics with an inbox go there a batch at a time."""

    inboxes: ClassVar[dict[str, Inbox]] = {}
    _seeks = 0

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

    async def perform_seek(self) -> None:
        """Faust seeks the stream partitions to their committed offsets after every rebalance;
        counted before and after, so a fetch that overlapped a seek can be told apart."""
        self._seeks += 1
        try:
            await super().perform_seek()
        finally:
            self._seeks += 1

    async def _deliver(self, records: Mapping[TP, list[Any]], active: set[TP] | None, seeks: int) -> None:
        generation = self.app.consumer_generation_id
        commit_every = self._commit_every
        for tp, tp_records in records.items():
            if not self.flow_active or self.app.consumer_generation_id != generation:
                return
            if active is not None and tp not in active and tp not in self._buffered_partitions:
                continue
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            inbox = self.inboxes.get(tp.topic)
            if inbox is not None:
                # Like Faust's conductor: nothing enters a stream buffer while a rebalance holds
                # the flow. If a rebalance sought to the committed offsets while this fetch was
                # under way, its records may come from the old position, ahead of records never
                # processed: those are dropped and fetched again rather than allowed to move the
                # read offset past them.
                await self.app.flow_control.acquire()
                if self._seeks != seeks and await self._fetched_ahead(tp, tp_records):
                    continue
                messages = await self._new_messages(tp, tp_records)
                if messages:
                    self._count_in(tp, messages)
                inbox.put(messages)
                self.app.monitor.stream_inbound_time[tp] = time.monotonic()
                if inbox.full:
                    await self.wait_first(inbox.wait_for_room(), self.suspend_flow.wait())
            else:
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

    async def _fetched_ahead(self, tp: TP, tp_records: list[Any]) -> bool:
        """After a seek that overlapped the fetch: True (and seek again) when these records start
        past the offset the seek set, i.e. they come from the old position."""
        while self._seeks % 2:  # a seek still under way: its offsets are not set yet
            await asyncio.sleep(0.01)
        expected = self._read_offset[tp]
        if not tp_records or tp_records[0].offset <= (expected or 0):
            return False
        await self.seek(tp, expected or 0)
        return True

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
