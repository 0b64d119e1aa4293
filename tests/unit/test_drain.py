"""The drain path of the batch consumer: no fetched record is lost across rebalances and seeks.

:func:`plan_delivery` is tested directly. The sequence tests run the real ``BatchConsumer``
methods (``_deliver``, ``perform_seek``) over a small model of the client underneath, with
aiokafka's documented position rules: a fetch moves the position past every record it
returned, ``seek_to_committed`` moves only partitions with a committed offset above 0, and a
seek sets the position. That is enough to reproduce, deterministically, the loss of a newly
assigned, never-committed partition's records that a fetch in flight during a rebalance returns.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from faust.types import TP
from mode.utils.logging import CompositeLogger, get_logger

from app.batches import Inbox, Plan, plan_delivery
from app.internals import BatchConsumer

EVENTS = "events"


@pytest.mark.parametrize(
    ("offsets", "expected", "deliverable", "sought", "confirmed", "plan"),
    [
        ([5, 6, 7], 5, True, False, None, Plan()),
        ([3, 4, 5, 6], 5, True, False, None, Plan(skip=2)),  # 3 and 4 were delivered already
        ([3, 4], 5, True, False, None, Plan(skip=2, deliver=False)),
        ([5, 6], 5, False, False, None, Plan(deliver=False, rewind_to=5)),  # flow held: seek back
        ([7, 8], 5, False, False, None, Plan(deliver=False, rewind_to=5)),
        ([9, 10], 5, True, True, None, Plan(deliver=False, rewind_to=5)),  # stale fetch ahead of a seek
        ([9, 10], 5, True, False, None, Plan(deliver=False, rewind_to=5)),  # a jump: fetched again
        ([9, 10], 5, True, False, 9, Plan()),  # a fetch from 5 started at 9 too: a gap in the log
        ([9, 10], 5, True, True, 9, Plan(deliver=False, rewind_to=5)),  # ...unless a seek overlapped
        ([11, 12], 5, True, False, 9, Plan(deliver=False, rewind_to=5)),  # not the same answer
        ([4, 5, 6], 5, True, True, None, Plan(skip=1)),
        ([0, 1], None, True, False, None, Plan()),  # not positioned yet: Faust's own checks apply
        ([0, 1], None, False, False, None, Plan(deliver=False)),
    ],
)
def test_plan_delivery(
    offsets: list[int],
    expected: int | None,
    deliverable: bool,
    sought: bool,
    confirmed: int | None,
    plan: Plan,
) -> None:
    got = plan_delivery(offsets, expected, deliverable=deliverable, sought=sought, confirmed_gap=confirmed)
    assert got == plan


@dataclass
class _Record:
    topic: str
    partition: int
    offset: int
    timestamp: int = 0
    timestamp_type: int = 0
    headers: list[Any] = field(default_factory=list)
    key: bytes | None = b"1"
    value: bytes | None = b"{}"
    checksum: int | None = None
    serialized_key_size: int = 1
    serialized_value_size: int = 2


class _FlowControl:
    def __init__(self) -> None:
        self.active = True
        self.queues: list[Any] = []

    def manage_queue(self, queue: Any) -> None:
        self.queues.append(queue)

    def is_active(self) -> bool:
        return self.active

    async def acquire(self) -> None:
        return None


class _Topics:
    def acks_enabled_for(self, topic: str) -> bool:
        return True


class _Monitor:
    def __init__(self) -> None:
        self.messages_received_total = 0
        self.messages_received_by_topic: dict[str, int] = defaultdict(int)
        self.tp_read_offsets: dict[TP, int] = {}
        self.stream_inbound_time: dict[TP, float] = {}

    def track_tp_end_offset(self, tp: TP, offset: int) -> None:
        return None


class _App:
    def __init__(self) -> None:
        self.consumer_generation_id = 1
        self.flow_control = _FlowControl()
        self.topics = _Topics()
        self.monitor = _Monitor()


class _Broker:
    """A log per partition, the group's committed offsets, and the client's fetch positions."""

    def __init__(self, lengths: Mapping[TP, int]) -> None:
        self.lengths = dict(lengths)
        self.committed: dict[TP, int | None] = {tp: None for tp in lengths}
        self.position: dict[TP, int] = {tp: 0 for tp in lengths}
        self.assigned: set[TP] = set()
        #: Offsets the log does not hold (compacted away, transaction markers).
        self.holes: dict[TP, set[int]] = defaultdict(set)

    def fetch(self, tp: TP, limit: int = 100) -> list[_Record]:
        start = self.position[tp]
        end = min(self.lengths[tp], start + limit)
        self.position[tp] = end
        return [_Record(tp.topic, tp.partition, o) for o in range(start, end) if o not in self.holes[tp]]


class _SimConsumer(BatchConsumer):
    """The real BatchConsumer logic over :class:`_Broker` instead of a network client."""

    def __init__(self, app: _App, broker: _Broker) -> None:  # no Faust service set-up
        self.app = app  # type: ignore[assignment]
        self.broker = broker
        self.log = CompositeLogger(get_logger("test_drain"))
        self.flow_active = True
        self._seeks = 0
        self._next_offset = {}
        self._start_offset = {}
        self._gap_checked = {}
        self._read_offset = defaultdict(lambda: None)
        self._committed_offset = defaultdict(lambda: None)
        self._buffered_partitions = set()
        self._commit_every = None
        self._n_acked = 0
        self.gaps: list[tuple[int, int, int]] = []

    def assignment(self) -> set[TP]:
        return set(self.broker.assigned)

    def highwater(self, tp: TP) -> int:
        return self.broker.lengths[tp]

    async def seek_to_committed(self) -> Mapping[TP, int]:
        out: dict[TP, int] = {}
        for tp in self.broker.assigned:
            offset = self.broker.committed[tp]
            out[tp] = -1 if offset is None else offset
            if offset and offset > 0:
                self.broker.position[tp] = offset
        return out

    async def earliest_offsets(self, *partitions: TP) -> Mapping[TP, int]:
        return {tp: 0 for tp in partitions}

    async def _seek(self, partition: TP, offset: int) -> None:
        self.broker.position[partition] = offset

    async def _seek_positions(self, partitions: Mapping[TP, int]) -> None:
        for tp, offset in partitions.items():
            self.broker.position[tp] = offset

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Faust treats a gap as processed: the group commits past it."""
        self.gaps.append((tp.partition, offset_from, offset_to))


def _setup(partitions: int = 2, length: int = 50) -> tuple[_App, _Broker, _SimConsumer, Inbox]:
    app = _App()
    tps = {TP(EVENTS, p): length for p in range(partitions)}
    broker = _Broker(tps)
    consumer = _SimConsumer(app, broker)
    inbox = Inbox(app, EVENTS, max_buffered=10_000)  # type: ignore[arg-type]
    _SimConsumer.inboxes = {EVENTS: inbox}
    return app, broker, consumer, inbox


def _delivered(inbox: Inbox) -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for message in inbox._messages:
        out[message.partition].append(message.offset)
    return dict(out)


async def _fetch_and_deliver(consumer: _SimConsumer, broker: _Broker, tps: list[TP], seeks: int) -> None:
    records = {tp: broker.fetch(tp) for tp in tps}
    await consumer._deliver({tp: r for tp, r in records.items() if r}, set(tps), seeks)


async def test_records_fetched_during_a_rebalance_of_a_never_committed_partition_come_back() -> None:
    """A fetch in flight when a rebalance starts returns records of a partition that has no
    committed offset; they are dropped while the flow is held. After the rebalance the partition
    must be read again from its first offset, not from where that fetch left the position."""
    app, broker, consumer, inbox = _setup(partitions=1)
    tp = TP(EVENTS, 0)
    broker.assigned = {tp}
    seeks = consumer._seeks
    in_flight = broker.fetch(tp)  # the fetch started before the rebalance...
    consumer.flow_active = False  # ...which holds the flow...
    app.consumer_generation_id = 2
    await consumer._deliver({tp: in_flight}, {tp}, seeks)  # ...so its records are dropped
    assert _delivered(inbox) == {}
    await consumer.perform_seek()  # the rebalance's seek: nothing committed for this partition
    consumer.flow_active = True
    await _fetch_and_deliver(consumer, broker, [tp], consumer._seeks)
    assert _delivered(inbox) == {0: list(range(50))}


async def test_a_stale_fetch_that_overlapped_the_seek_is_fetched_again_from_the_committed_offset() -> None:
    _, broker, consumer, inbox = _setup(partitions=1)
    tp = TP(EVENTS, 0)
    broker.assigned = {tp}
    broker.committed[tp] = 10
    await consumer.perform_seek()
    broker.position[tp] = 30  # an old fetch position, as if the seek raced a fetch
    seeks_before = consumer._seeks - 2
    await consumer._deliver({tp: broker.fetch(tp, 5)}, {tp}, seeks_before)
    assert _delivered(inbox) == {}
    assert broker.position[tp] == 10
    await _fetch_and_deliver(consumer, broker, [tp], consumer._seeks)
    assert _delivered(inbox) == {0: list(range(10, 50))}


async def test_a_partition_not_active_is_rewound_not_skipped() -> None:
    _, broker, consumer, inbox = _setup(partitions=2)
    tps = [TP(EVENTS, 0), TP(EVENTS, 1)]
    broker.assigned = set(tps)
    await consumer.perform_seek()
    records = {tp: broker.fetch(tp, 20) for tp in tps}
    await consumer._deliver(records, {tps[0]}, consumer._seeks)  # partition 1 paused meanwhile
    assert _delivered(inbox) == {0: list(range(20))}
    assert broker.position[tps[1]] == 0
    await _fetch_and_deliver(consumer, broker, tps, consumer._seeks)
    assert _delivered(inbox) == {0: list(range(50)), 1: list(range(50))}


async def test_a_fetch_that_jumped_past_undelivered_records_is_fetched_again_not_committed_past() -> None:
    """The fetch position moved past records that never reached the inbox (no seek of ours in
    between): delivering the next fetch would let Faust mark them a gap and the group commit past
    them, unprocessed. They are fetched again instead."""
    _, broker, consumer, inbox = _setup(partitions=1)
    tp = TP(EVENTS, 0)
    broker.assigned = {tp}
    await consumer.perform_seek()
    await consumer._deliver({tp: broker.fetch(tp, 10)}, {tp}, consumer._seeks)
    broker.fetch(tp, 2)  # records 10 and 11 fetched, but lost on the way to the inbox
    await _fetch_and_deliver(consumer, broker, [tp], consumer._seeks)
    assert broker.position[tp] == 10
    await _fetch_and_deliver(consumer, broker, [tp], consumer._seeks)
    assert _delivered(inbox) == {0: list(range(50))}
    assert consumer.gaps == []


async def test_a_gap_in_the_log_itself_is_delivered_after_one_second_fetch() -> None:
    """Offsets the log does not hold (compaction, transaction markers) must not stall the
    partition: the second fetch from the same offset starts at the same later record."""
    _, broker, consumer, inbox = _setup(partitions=1)
    tp = TP(EVENTS, 0)
    broker.assigned = {tp}
    broker.holes[tp] = {10, 11}
    await consumer.perform_seek()
    await consumer._deliver({tp: broker.fetch(tp, 10)}, {tp}, consumer._seeks)
    for _ in range(3):
        await _fetch_and_deliver(consumer, broker, [tp], consumer._seeks)
    assert _delivered(inbox) == {0: [o for o in range(50) if o not in (10, 11)]}
    assert consumer.gaps == [(0, 10, 12)]


async def test_a_stale_read_offset_does_not_drop_records_the_inbox_wants() -> None:
    """Faust skips records below its read offset; after a seek back that Faust's bookkeeping
    missed, the inbox's own position decides."""
    _, broker, consumer, inbox = _setup(partitions=1)
    tp = TP(EVENTS, 0)
    broker.assigned = {tp}
    await consumer.perform_seek()
    consumer._read_offset[tp] = 30
    await _fetch_and_deliver(consumer, broker, [tp], consumer._seeks)
    assert _delivered(inbox) == {0: list(range(50))}


async def test_every_record_is_delivered_once_in_order_across_repeated_rebalances() -> None:
    """Rebalances at every step, some records dropped each time: the inbox still receives each
    offset of each partition, in order, with nothing missing (repeats only from the committed
    offset, which the aggregation skips by its stored progress)."""
    app, broker, consumer, inbox = _setup(partitions=3, length=200)
    tps = [TP(EVENTS, p) for p in range(3)]
    broker.assigned = set(tps)
    await consumer.perform_seek()
    for step in range(12):
        seeks = consumer._seeks
        fetched = {tp: broker.fetch(tp, 7 + step) for tp in tps}
        if step % 3 == 1:  # a rebalance while this fetch was in flight
            consumer.flow_active = False
            app.consumer_generation_id += 1
            await consumer._deliver(fetched, set(tps), seeks)
            inbox.clear()  # Faust clears managed queues; nothing was acked or committed
            for tp in tps:
                broker.committed[tp] = None
            await consumer.perform_seek()
            consumer.flow_active = True
            continue
        await consumer._deliver(fetched, set(tps), seeks)
    for _ in range(60):
        await _fetch_and_deliver(consumer, broker, tps, consumer._seeks)
    got = _delivered(inbox)
    for p in range(3):
        assert got[p] == list(range(got[p][0], 200)), p
        assert got[p][0] == 0


async def test_lag_counts_from_the_committed_offset_not_the_fetch_position() -> None:
    _, broker, consumer, _ = _setup(partitions=1, length=50)
    tp = TP(EVENTS, 0)
    broker.assigned = {tp}
    await consumer.perform_seek()
    broker.fetch(tp, 40)  # fetched, never processed: the fetch position says 10 behind
    assert consumer.uncommitted(tp) == 50
    consumer._committed_offset[tp] = 30
    assert consumer.uncommitted(tp) == 20
    assert consumer.uncommitted(TP("other", 0)) is None
