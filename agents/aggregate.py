"""The windowed aggregation agent: decode, validate, aggregate, emit — a batch at a time.

Each batch is grouped by source partition and applied in memory; the windows the frontier closed
are published to the results topic. Once the broker has acknowledged everything the batch sent,
per partition, every touched open window is written to the changelogged table once, then the
partition's progress record, then the final windows are deleted from the table (a real
tombstone). That order is what makes a crash at any point recoverable without loss or double
counting (see tables/partition_state.py and docs/processing.md).

Records arrive a fetched batch at a time through the events topic's inbox (app/batches.py), not
one by one through a Faust Stream. Table writes need Faust's "current event" to pick the
changelog partition, so the context is set explicitly to an event of the partition being written
(faust.streams._current_event, pinned with faust-streaming==0.15.3 and covered by the recovery
tests).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from faust import Event
from faust import streams as faust_streams
from faust.types import Message

from api.zones import load_zones
from app import batches, metrics
from app.control import IDLE, control_kind, decode_control, encode_control
from app.events import TripEvent, format_time_ms, parse_event
from app.main import app, settings
from app.publish import publish
from app.topics import dlq_topic, events_topic, late_topic
from tables.aggregate import TripAggregate
from tables.partition_state import (
    LateEvent,
    PartitionState,
    Progress,
    Slot,
    WindowKey,
    parse_slot_table_key,
    progress_table_key,
    slot_state,
    slot_table_key,
    windows_from_slot_state,
)
from tables.results import window_record
from tables.state import state_table
from tables.windows import WindowSize

log = logging.getLogger(__name__)

BATCH_MAX = 10_000
#: How long a batch waits for more records once one is there: what a quiet stream adds to
#: latency, and what saves rewriting the same windows' state for every single record.
BATCH_LINGER_S = 0.02
BATCH_RETRY_S = 1.0
CLOSED_AT_HEADER = "streampulse-closed-at-ms"
PRODUCER_BUFFER_MAX = 4 * BATCH_MAX

#: Fetched records of the events topic wait here for the agent (bounded: fetching pauses).
inbox = batches.inbox(app, settings.events, max_buffered=4 * BATCH_MAX)

SIZES: list[WindowSize] = settings.window_sizes
SIZE_NAMES = {s.size_ms: s.name for s in SIZES}

#: Per-partition state cached in memory; rebuilt from the table after (re)assignment.
_states: dict[int, PartitionState] = {}
#: Wall-clock time a record was last seen per partition, and whether an idle marker is pending.
_last_seen: dict[int, float] = {}
_idle_sent: set[int] = set()
#: Open windows changed since the last live mirror, with the oldest unmirrored record timestamp.
#: The aggregate itself is kept, not its record: the record is built only when the mirror runs
#: (once a second), not for every window on every batch.
live_dirty: dict[WindowKey, tuple[TripAggregate, float]] = {}


def _load_partition(partition: int) -> PartitionState:
    """Rebuild a partition's state from the (recovered) table.

    Reads that partition's RocksDB directly: ``Table.items()`` only visits partitions the assignor
    lists as active at that instant, which during back-to-back rebalances can omit a partition
    whose events are already being processed — the worker then started it from empty state.
    """
    store: Any = state_table.data  # faust.stores.rocksdb.Store (faust-streaming pinned)
    db = store._db_for_partition(partition)
    windows: dict[WindowKey, TripAggregate] = {}
    progress_state = None
    progress_key = progress_table_key(partition)
    for raw_key, raw_value in store._visible_items(db):
        key = store._decode_key(raw_key)
        value = store._decode_value(raw_value)
        if value is None:
            continue
        if key == progress_key:
            progress_state = value
            continue
        parsed = parse_slot_table_key(key)
        if parsed is not None and parsed[0] == partition and parsed[1][0] in SIZE_NAMES:
            windows.update(windows_from_slot_state(parsed[1], value))
    progress = Progress.from_state(progress_state)
    log.info(
        "partition %d: %d open windows recovered, progress offset %d",
        partition,
        len(windows),
        progress.offset,
    )
    return PartitionState(partition, SIZES, settings.lateness_ms, progress, windows)


class _Revoked(Exception):
    """A rebalance began mid-batch: stop before writing state that may no longer be ours."""


#: Set while no batch is being processed; a rebalance waits for it before partitions move on,
#: so the changelog never gets writes from an old owner after the new one has recovered.
_batch_idle = asyncio.Event()
_batch_idle.set()


def _check_flow() -> None:
    if not app.flow_control.is_active():
        raise _Revoked


def _partition_state(partition: int) -> PartitionState:
    state = _states.get(partition)
    if state is None:
        state = _states[partition] = _load_partition(partition)
    return state


def _partitions_arg(args: tuple[Any, ...], kwargs: dict[str, Any], name: str) -> set[Any]:
    """Faust sends the partition set positionally; accept the keyword form too."""
    return set(args[0]) if args else set(kwargs.get(name, ()))


@app.on_partitions_revoked.connect  # type: ignore[arg-type]
async def _on_revoked(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
    # Faust suspended the flow before this signal: a running batch stops at its next check.
    await _batch_idle.wait()
    for tp in _partitions_arg(args, kwargs, "revoked"):
        try:
            metrics.CONSUMER_LAG.remove(tp.topic, str(tp.partition))
        except KeyError:
            pass
        if tp.topic == settings.events:
            _states.pop(tp.partition, None)


@app.on_partitions_assigned.connect  # type: ignore[arg-type]
async def _on_assigned(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
    # The table may be recovered from the changelog after this; rebuild lazily on first use.
    for tp in _partitions_arg(args, kwargs, "assigned"):
        if tp.topic == settings.events:
            _states.pop(tp.partition, None)


def _dlq_headers(msg: Message, reason: str, message: str) -> list[tuple[str, bytes]]:
    return [
        ("streampulse-error-reason", reason.encode()),
        ("streampulse-error-message", message.encode()[:1000]),
        ("streampulse-source", f"{msg.topic}/{msg.partition}/{msg.offset}".encode()),
    ]


def _headers(msg: Any) -> list[tuple[str, bytes]]:
    headers = msg.headers
    if isinstance(headers, Mapping):
        return list(headers.items())
    return list(headers or ())


@dataclass(slots=True)
class _Tally:
    """A batch's per-event metrics, recorded once per batch (per event they cost a fifth of
    the worker's time): trips and revenue per region, fares and durations observed."""

    trips: dict[int, list[float]] = field(default_factory=dict)
    fares: list[float] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)

    def add(self, ev: TripEvent) -> None:
        tally = self.trips.get(ev.region_id)
        if tally is None:
            self.trips[ev.region_id] = [1.0, ev.fare]
        else:
            tally[0] += 1
            tally[1] += ev.fare
        self.fares.append(ev.fare)
        self.durations.append(ev.duration)

    def record(self) -> None:
        for region, (count, revenue) in self.trips.items():
            metrics.TRIPS.labels(str(region)).inc(count)
            metrics.REVENUE.labels(str(region)).inc(revenue)
        metrics.observe_many(metrics.TRIP_FARE, self.fares)
        metrics.observe_many(metrics.TRIP_DURATION, self.durations)


async def _apply_record(state: PartitionState, msg: Message, sends: list[Any], tally: _Tally) -> bool:
    """Apply one record; returns True for a folded trip event. Bad input goes to the DLQ."""
    kind = control_kind(_headers(msg)) if msg.headers else None
    if kind is not None:
        control = decode_control(kind, msg.value)
        if control is None:
            metrics.EVENTS_INVALID.labels("invalid_control").inc()
            sends.append(await _send_dlq(msg, "invalid_control", "control record without event_time_ms"))
        else:
            state.apply_control(control.event_time_ms)
            metrics.CONTROL_RECORDS.labels(kind).inc()
        return False
    parsed = parse_event(msg.value if msg.value is not None else b"")
    if not isinstance(parsed, TripEvent):
        metrics.EVENTS_INVALID.labels(parsed.reason).inc()
        log.warning("invalid record %s/%d/%d: %s", msg.topic, msg.partition, msg.offset, parsed.message)
        sends.append(await _send_dlq(msg, parsed.reason, parsed.message))
        return False
    outcome = state.apply_event(
        msg.offset, parsed.region_id, parsed.event_time_ms, parsed.fare, parsed.duration, parsed.distance
    )
    for late in outcome.late:
        metrics.EVENTS_LATE.labels(late.size.name).inc()
        sends.append(await _send_late(parsed, msg.partition, late))
    tally.add(parsed)
    return True


@dataclass(slots=True)
class _Folded:
    """A partition's part of a batch, applied in memory: what to store once the broker has
    acknowledged everything the batch sent."""

    state: PartitionState
    context: Event
    final_slots: set[Slot]
    newest_ts: float
    processed: int
    tally: _Tally


async def _fold_partition(partition: int, messages: Sequence[Message], sends: list[Any]) -> _Folded:
    """Apply a partition's records and publish the windows they finalized (results, late
    events and dead letters go into ``sends``)."""
    state = _partition_state(partition)
    _last_seen[partition] = time.time()
    _idle_sent.discard(partition)
    newest_ts = 0.0
    processed = 0
    tally = _Tally()
    for msg in messages:
        _check_flow()
        offset = msg.offset
        if state.is_duplicate(offset):
            metrics.EVENTS_DUPLICATE.inc()
            continue
        try:
            if await _apply_record(state, msg, sends, tally):
                processed += 1
                newest_ts = max(newest_ts, msg.timestamp or 0.0)
        except Exception as exc:  # a worker never crashes on one record
            log.exception("record %s/%d/%d could not be processed", msg.topic, partition, offset)
            metrics.EVENTS_INVALID.labels("processing_error").inc()
            sends.append(await _send_dlq(msg, "processing_error", repr(exc)))
        state.mark_applied(offset)
    final = state.take_final()
    if final:
        records = []
        for key, agg in final:
            record = window_record(key[1], SIZE_NAMES[key[0]], key[0], key[2], agg, final=True)
            live_dirty.pop(key, None)
            records.append((str(key[1]).encode(), orjson.dumps(record)))
        for size_ms, count in Counter(key[0] for key, _ in final).items():
            metrics.WINDOWS_FINALIZED.labels(SIZE_NAMES[size_ms]).inc(count)
        headers = [(CLOSED_AT_HEADER, str(int(time.time() * 1000)).encode())]
        sends.extend(await publish(app, settings.results, records, headers))
    final_slots = {(k[0], k[2]) for k, _ in final}
    return _Folded(state, _partition_event(messages[-1]), final_slots, newest_ts, processed, tally)


def _store_partition(partition: int, folded: _Folded) -> None:
    """Write the partition's open windows and progress, then delete its final slots.

    Runs after the broker acknowledged the batch's results: a window's final result is
    published before any progress past its events is stored, so a crash in between replays
    those events and publishes the same result again — never loses it. A window that opened
    and closed within the batch is never written to the table at all.
    """
    state, now = folded.state, time.time()
    # Writes in the context of this partition: changelog partition = source partition.
    faust_streams._current_event.set(weakref.ref(folded.context))
    dirty_slots: set[Slot] = set()
    for key, agg in state.take_dirty():
        dirty_slots.add((key[0], key[2]))
        prev = live_dirty.get(key)
        live_dirty[key] = (agg, prev[1] if prev else (folded.newest_ts or now))
    for slot in dirty_slots:
        state_table[slot_table_key(partition, slot)] = slot_state(state.slot_windows(slot))
    state.persisted |= dirty_slots
    state_table[progress_table_key(partition)] = state.progress.to_state()
    for slot in folded.final_slots & state.persisted:
        del state_table[slot_table_key(partition, slot)]
    state.persisted -= folded.final_slots
    # Counted once stored: a batch stopped by a rebalance is processed again by the new owner.
    metrics.EVENTS_PROCESSED.inc(folded.processed)
    folded.tally.record()
    _observe_partition(partition, state)


def _observe_partition(partition: int, state: PartitionState) -> None:
    label = str(partition)
    now = time.time()
    metrics.OPEN_WINDOWS.labels(label).set(len(state.windows))
    wm = state.watermark_ms
    if wm is not None and state.progress.max_event_ms is not None:
        metrics.WATERMARK.labels(label).set(wm / 1000)
        metrics.WATERMARK_DELAY.labels(label).set(now - wm / 1000)
        metrics.EVENT_TIME_LAG.labels(label).set(now - state.progress.max_event_ms / 1000)
    metrics.LAST_EVENT_SECONDS.set(now)


def _partition_event(msg: Message) -> Event:
    """An event of ``msg``'s partition, to write table keys in that partition's context."""
    return Event(app, msg.key, msg.value, msg.headers, msg)


async def _send_dlq(msg: Message, reason: str, message: str) -> Any:
    return await dlq_topic.send(key=msg.key, value=msg.value, headers=_dlq_headers(msg, reason, message))


async def _send_late(ev: TripEvent, partition: int, late: LateEvent) -> Any:
    size, start_ms = late.size, late.window_start_ms
    value = orjson.dumps(
        {
            "event": ev.to_canonical(),
            "window": size.name,
            "window_start": format_time_ms(start_ms),
            "window_end": format_time_ms(start_ms + size.size_ms),
            "closed_up_to": format_time_ms(late.frontier_ms),
            "reason": f"the {size.name} window was already final",
            "source": f"{settings.events}/{partition}/{late.offset}",
        }
    )
    return await late_topic.send(key=str(ev.region_id).encode(), value=value)


async def _process_batch(messages: list[Message]) -> None:
    by_partition: dict[int, list[Message]] = defaultdict(list)
    for msg in messages:
        by_partition[msg.partition].append(msg)
    sends: list[Any] = []
    folded = {p: await _fold_partition(p, part, sends) for p, part in by_partition.items()}
    # One wait for the broker's acks per batch (not per partition), then the state writes.
    if sends:
        await asyncio.gather(*sends)
    _check_flow()
    for partition, part in folded.items():
        _store_partition(partition, part)
    faust_streams._current_event.set(None)


def _forget_batch_state(messages: list[Message]) -> None:
    """After a batch stopped midway: its partitions' in-memory state may be ahead of what was
    stored, so it is rebuilt from the table when next needed."""
    for partition in {msg.partition for msg in messages}:
        _states.pop(partition, None)
    faust_streams._current_event.set(None)


@app.agent(events_topic)
async def aggregate_trips(stream: Any) -> None:
    """Fold trip events into their windows; one pass per batch, partitions kept apart.

    The records come from ``inbox`` (a fetched batch at a time); ``stream`` is Faust's, which
    this agent declares the topic with but does not iterate. A batch that fails midway (the
    broker not acknowledging, say) is retried from the partitions' stored state, exactly like
    a restart after a crash: nothing is acked, so nothing is committed, until it went through.
    """
    # Table writes queue changelog messages in Faust's producer buffer, and the conductor stops
    # consuming while more than ``max_messages`` (100) are queued, draining them one by one:
    # with one write per touched window per batch that cap throttled the worker to ~600
    # events/s. The buffer is bounded by the batch size instead.
    app.producer.buffer.max_messages = PRODUCER_BUFFER_MAX
    while True:
        messages = await inbox.take(BATCH_MAX, BATCH_LINGER_S)
        _batch_idle.clear()
        try:
            await _process_batch(messages)
        except _Revoked:
            # Not acked: after the rebalance the records are fetched again by their owner, from
            # the committed offset, and applied to that partition's stored state.
            log.info("rebalance during a batch of %d records: stopped it", len(messages))
            _forget_batch_state(messages)
            continue
        except Exception:
            log.exception("batch of %d records failed; retrying from the stored state", len(messages))
            metrics.BATCH_RETRIES.inc()
            _forget_batch_state(messages)
            inbox.requeue(messages)
            await asyncio.sleep(BATCH_RETRY_S)
            continue
        finally:
            _batch_idle.set()
        inbox.ack(messages)


@app.timer(5.0)
async def observe_consumer_lag() -> None:
    """Records behind each assigned partition's high watermark (what the lag alert watches)."""
    consumer = app.consumer
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        position = await consumer.position(tp)
        if highwater is not None and position is not None:
            metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, highwater - position))


@app.task
async def publish_region_names() -> None:
    """One streampulse_region_info series per known zone, for the dashboards' joins."""
    for region_id, zone in load_zones(settings.zones_file).items():
        metrics.REGION_INFO.labels(str(region_id), zone.name or "", zone.borough or "").set(1)


@app.timer(1.0)
async def send_idle_markers() -> None:
    """Close the windows of partitions that have gone silent, through the log (deterministic)."""
    idle_ms = settings.idle_timeout_ms
    if not idle_ms:
        return
    now = time.time()
    for partition, state in list(_states.items()):
        seen = _last_seen.get(partition)
        if seen is None or partition in _idle_sent or not state.windows:
            continue
        if (now - seen) * 1000 >= idle_ms and state.progress.max_event_ms is not None:
            value, headers = encode_control(IDLE, state.progress.max_event_ms)
            await events_topic.send(value=value, headers=headers, partition=partition)
            _idle_sent.add(partition)
            log.info("partition %d idle for %.0fs: closing its windows", partition, now - seen)
