"""The one door to library internals: every private name of Faust, aiokafka and prometheus-client
that StreamPulse relies on is used here and nowhere else — but for the pacing of aiokafka's
metadata requests, in :mod:`app.kafka_pacing`, which the replayer needs without importing Faust
(its names are listed here too).

They are what makes the worker fast and safe (a batch-delivering consumer, table writes in a
chosen partition's context, reads of one partition's RocksDB, batch publishing, one bucket lock
per histogram update) and they can change in any release, so the worker refuses to start on a
version this module was not tested with (:func:`check_versions`) and
``tests/unit/test_internals.py`` checks that every name in :data:`PRIVATE_NAMES` still exists.
Upgrading a pinned library means running that test, then the integration and fault suites,
then adding the version to :data:`TESTED`. docs/architecture.md lists what each name is for.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from bisect import bisect_left
from collections.abc import Iterator, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, ClassVar

import aiokafka
import faust.streams
import mode
from faust import Event
from faust.sensors.prometheus import PrometheusMonitor
from faust.stores import base as faust_store_base
from faust.stores import rocksdb as faust_rocksdb
from faust.tables.base import Collection
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.consumer import Consumer as FaustConsumer
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP, AppT, Message
from prometheus_client import Histogram

from app import kafka_pacing
from app.batches import Inbox, plan_delivery

#: Versions (exact, or a release prefix) the private names below were checked against.
TESTED: Mapping[str, tuple[str, ...]] = {
    "faust-streaming": ("0.15.3",),
    "aiokafka": ("0.14.",),
    "prometheus-client": ("0.20.", "0.21.", "0.22.", "0.23.", "0.24.", "0.25.", "0.26."),
}

#: ``(owner, name)``: ``owner`` has attribute ``name`` (a method or class attribute), or, for
#: names set per instance, ``owner``'s source assigns ``self.name``.
PRIVATE_NAMES: Sequence[tuple[object, str]] = (
    (FaustConsumer, "_drain_messages"),
    (FaustConsumer, "_get_active_partitions"),
    (FaustConsumer, "_wait_next_records"),
    (FaustConsumer, "_to_message"),
    (FaustConsumer, "_add_gap"),
    (FaustConsumer, "_n_acked"),
    (FaustConsumer, "_commit_every"),
    (FaustConsumer, "_read_offset"),
    (FaustConsumer, "_committed_offset"),
    (FaustConsumer, "_buffered_partitions"),
    (mode.Service, "_stopped"),
    (PrometheusMonitor, "_metrics"),
    (aiokafka_driver.Producer, "_ensure_producer"),
    (aiokafka.AIOKafkaClient, "_wait_on_metadata"),
    *kafka_pacing.PRIVATE_NAMES,
    (faust.streams, "_current_event"),
    (faust_rocksdb.Store, "_db_for_partition"),
    (faust_rocksdb.Store, "_visible_items"),
    (faust_store_base.Store, "_decode_key"),
    (faust_store_base.Store, "_decode_value"),
    (Histogram, "_upper_bounds"),
    (Histogram, "_sum"),
    (Histogram, "_buckets"),
)


class UntestedVersion(RuntimeError):
    """A library whose private names this module uses is at a version nobody checked."""


def check_versions() -> None:
    """Fail fast, with the fix in the message, rather than misbehave subtly at run time."""
    for package, accepted in TESTED.items():
        try:
            found = version(package)
        except PackageNotFoundError as exc:
            raise UntestedVersion(f"{package} is not installed; StreamPulse needs it") from exc
        if not any(found == v or (v.endswith(".") and found.startswith(v)) for v in accepted):
            raise UntestedVersion(
                f"{package} {found} is not a version StreamPulse was tested with "
                f"({', '.join(v + ('x' if v.endswith('.') else '') for v in accepted)}): app/internals.py "
                "uses its private names. Install a tested version (requirements.lock), or check the "
                "new one with tests/unit/test_internals.py and the integration suite and add it to TESTED."
            )


# --- tables: the partition context of a write, and one partition's RocksDB ---------------------


#: The event a table write's partition is taken from, held here: Faust keeps only a weak
#: reference to it.
_write_event: Event | None = None


def set_write_partition(app: AppT, message: Message) -> None:
    """Make table writes go to ``message``'s partition of the changelog: Faust picks the
    changelog partition from the "current event", which a batch (not a Stream) never sets."""
    global _write_event
    _write_event = Event(app, message.key, message.value, message.headers, message)
    faust.streams._current_event.set(weakref.ref(_write_event))


def clear_write_partition() -> None:
    global _write_event
    _write_event = None
    faust.streams._current_event.set(None)


def partition_items(table: Collection, partition: int) -> Iterator[tuple[Any, Any]]:
    """Decoded ``(key, value)`` pairs of one partition's RocksDB.

    ``Table.items()`` only visits partitions the assignor lists as active at that instant, which
    during back-to-back rebalances can omit a partition whose events are already being
    processed: the worker would then start it from empty state."""
    store: Any = table.data
    db = store._db_for_partition(partition)
    for raw_key, raw_value in store._visible_items(db):
        yield store._decode_key(raw_key), store._decode_value(raw_value)


# --- the producer inside Faust's --------------------------------------------------------------


async def topic_producer(app: AppT, topic: str) -> tuple[Any, list[int]]:
    """aiokafka's producer behind Faust's, with ``topic``'s metadata loaded: its partitions."""
    producer = app.producer._ensure_producer()  # type: ignore[attr-defined]
    await producer.client._wait_on_metadata(topic)
    return producer, sorted(producer.client.cluster.partitions_for_topic(topic))


# --- prometheus-client ------------------------------------------------------------------------


def observe_many(histogram: Histogram, values: Sequence[float]) -> None:
    """``histogram.observe(v)`` for every value, taking each bucket's lock once per call rather
    than once per value (docs/benchmarks.md has what that saves)."""
    if not values:
        return
    bounds = histogram._upper_bounds  # +Inf last
    counts = [0] * len(bounds)
    for value in values:
        counts[bisect_left(bounds, value)] += 1
    histogram._sum.inc(sum(values))
    for bucket, count in zip(histogram._buckets, counts, strict=True):
        if count:
            bucket.inc(count)


# --- the consumer: batch delivery to an inbox (app/batches.py) ---------------------------------


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
        #: ``(expected, first offset fetched)`` of the last fetch that started past the offset the
        #: inbox wanted and was fetched again: the same answer twice is a gap in the log itself.
        self._gap_checked: dict[TP, tuple[int, int]] = {}

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
        positions = {tp: committed.get(tp) or first.get(tp) or 0 for tp in tps}
        if positions:
            await self.seek_wait(positions)
        for tp, offset in positions.items():
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
            await self.seek_wait({tp: offset})

    async def seek_wait(self, partitions: Mapping[TP, int]) -> None:
        """Seek in the consumer's own thread, and set Faust's read offsets as ``seek`` does.

        Faust's ``seek`` runs aiokafka's from the calling thread, beside the consumer thread's
        fetch: aiokafka's fetcher then found a partition's buffered records removed under it
        (``KeyError`` in ``fetched_records``) and the fetcher service crashed, so the worker
        stopped consuming. ``seek_wait`` hands the seek to the consumer thread."""
        await self._seek_positions(partitions)
        for tp, offset in partitions.items():
            self._read_offset[tp] = offset if offset else None

    async def _seek_positions(self, partitions: Mapping[TP, int]) -> None:
        await super().seek_wait(partitions)

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
                expected = self._next_offset.get(tp)
                checked = self._gap_checked.get(tp)
                plan = plan_delivery(
                    [r.offset for r in tp_records],
                    expected,
                    deliverable=deliverable,
                    sought=self._seeks != seeks,
                    confirmed_gap=checked[1] if checked is not None and checked[0] == expected else None,
                )
                if plan.rewind_to is not None:
                    if deliverable:
                        first = tp_records[plan.skip].offset
                        self._gap_checked[tp] = (plan.rewind_to, first)
                        self.log.info(
                            "%s/%d: a fetch started at offset %d, %d not delivered yet: fetching again",
                            tp.topic,
                            tp.partition,
                            first,
                            plan.rewind_to,
                        )
                    await self._rewind(tp, plan.rewind_to)
                if not plan.deliver:
                    continue
                self._gap_checked.pop(tp, None)
                if expected is not None:
                    # Faust skips records below its read offset and commits past any jump from
                    # it; the inbox's own position is the truth (records below it were skipped
                    # by the plan, and a jump past it was confirmed by a second fetch).
                    self._read_offset[tp] = expected - 1 if expected > 0 else None
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
        per message, the Prometheus label lookups are a large share of the worker's time
        (docs/benchmarks.md, "Hot-path choices")."""
        n, last = len(messages), messages[-1].offset
        monitor: Any = self.app.monitor
        monitor.messages_received_total += n
        monitor.messages_received_by_topic[tp.topic] += n
        monitor.tp_read_offsets[tp] = last
        prometheus = getattr(monitor, "_metrics", None)  # FaustMetrics, with Faust's sensors on
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


def install_batch_consumer(app: AppT) -> None:
    """Use the batch-delivering consumer (before the app creates its consumer)."""
    app.transport = BatchTransport(app.conf.broker_consumer, app)


def batch_inbox(app: AppT, topic: str, max_buffered: int) -> Inbox:
    """Deliver ``topic`` to the returned inbox instead of to Faust's streams."""
    box = BatchConsumer.inboxes[topic] = Inbox(app, topic, max_buffered)
    return box
